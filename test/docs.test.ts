/**
 * The documentation in docs/ stays true to the code and to itself:
 * - docs/configuration.md is exactly configReferenceMarkdown() (rendered from the config schema);
 * - every relative link in docs/*.md points at an existing file, and an anchor at an existing heading.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configReferenceMarkdown } from '../src/commands/config-reference.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DOCS = join(ROOT, 'docs');

const REGENERATE =
  'docs/configuration.md is out of date with src/config/schema.ts; regenerate it from the repository root with:\n' +
  `  npm run build && node -e "import('./dist/commands/config-reference.js').then((m) => process.stdout.write(m.configReferenceMarkdown()))" > docs/configuration.md`;

/** Markdown text without fenced code blocks and inline code, where `[x](y)` is not a link. */
function prose(md: string): string {
  return md
    .replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
    .replace(/`[^`\n]*`/g, (code) => (code.includes('](') ? '' : code));
}

/** Link targets of `[text](target)` in the prose of `md` (images included). */
function linkTargets(md: string): string[] {
  const targets: string[] = [];
  for (const m of prose(md).matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]!);
  return targets;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function headingAnchors(md: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const noFences = md.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const m of noFences.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Why `target`, linked from `fromFile`, does not resolve; undefined when it does. */
function brokenLink(fromFile: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto: ...: not ours to check
  const hash = target.indexOf('#');
  const pathPart = hash === -1 ? target : target.slice(0, hash);
  const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
  const file = pathPart === '' ? fromFile : resolve(dirname(fromFile), decodeURIComponent(pathPart));
  if (!existsSync(file)) return `no such file ${file}`;
  if (anchor === undefined || anchor === '') return undefined;
  if (statSync(file).isDirectory() || !file.endsWith('.md')) return `anchor #${anchor} on a file that is not Markdown`;
  return headingAnchors(readFileSync(file, 'utf8')).has(anchor) ? undefined : `no heading #${anchor} in ${file}`;
}

const docFiles = readdirSync(DOCS)
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => join(DOCS, f));

t.test('docs/configuration.md is the generated configuration reference', async (t) => {
  const checkedIn = readFileSync(join(DOCS, 'configuration.md'), 'utf8');
  const generated = configReferenceMarkdown();
  t.ok(generated.startsWith('# Configuration reference\n'), 'a document with its own title');
  t.match(generated, /`heartbeat\.intervalMs`/, 'it lists the schema keys');
  t.equal(configReferenceMarkdown(), generated, 'deterministic');
  t.equal(checkedIn, generated, REGENERATE);
});

t.test('the documentation pages exist', async (t) => {
  for (const name of ['concepts.md', 'configuration.md', 'installation.md', 'troubleshooting.md']) {
    t.ok(existsSync(join(DOCS, name)), `docs/${name}`);
  }
});

t.test('the link checker itself', async (t) => {
  t.same(
    linkTargets('see [a](a.md) and [b](../b.md#x "title"), not `[c](c.md)` nor\n```\n[d](d.md)\n```\n'),
    ['a.md', '../b.md#x'],
    'links in prose only',
  );
  t.same(
    [...headingAnchors('# Title\n## 5. Runbooks\n### `node`\n## Title\n```\n# not a heading\n```\n')],
    ['title', '5-runbooks', 'node', 'title-1'],
    "GitHub's anchors",
  );
  t.match(brokenLink(join(DOCS, 'concepts.md'), 'no-such-page.md'), /no such file/, 'a missing file is reported');
  t.match(brokenLink(join(DOCS, 'concepts.md'), '#no-such-heading'), /no heading/, 'a missing heading is reported');
});

t.test('every relative link in docs/ resolves', async (t) => {
  t.ok(docFiles.length >= 4, 'found the pages');
  for (const file of docFiles) {
    const targets = linkTargets(readFileSync(file, 'utf8'));
    const broken = targets.map((target) => ({ target, why: brokenLink(file, target) })).filter((b) => b.why !== undefined);
    t.same(broken, [], `${file.slice(ROOT.length + 1)}: ${targets.length} links, none broken`);
  }
});

t.test('colo-agent config-reference prints exactly docs/configuration.md', async (t) => {
  const { runCli } = await import('./helpers/cli.js');
  const r = await runCli(['config-reference']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8'));
});
