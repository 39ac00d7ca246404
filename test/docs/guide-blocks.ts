/**
 * The runnable blocks of a Markdown guide: fenced ```sh blocks whose info string carries
 * `on=primary|secondary|both` (the host that runs it) and `step=NAME` (how a test refers to it),
 * e.g. "```sh on=primary step=qemu-primary". A fenced block without `on=` is shown to the reader
 * only (package installs, systemd): the test that runs the guide says why it skips them.
 */

export type GuideHost = 'primary' | 'secondary' | 'both';

export interface GuideBlock {
  step: string;
  on: GuideHost;
  /** The commands, as a reader pastes them. */
  text: string;
  /** 1-based line of the opening fence, for messages. */
  line: number;
}

export interface ShownBlock {
  lang: string;
  text: string;
  line: number;
}

const FENCE = /^```(\S*)(.*)$/;

/** Every fenced block of `md`, split into the runnable ones (in document order) and the shown ones. */
export function guideBlocks(md: string): { runnable: GuideBlock[]; shown: ShownBlock[] } {
  const runnable: GuideBlock[] = [];
  const shown: ShownBlock[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !lines[i]!.startsWith('```'); i++) body.push(lines[i]!);
    if (i >= lines.length) throw new Error(`line ${start + 1}: a fenced block is never closed`);
    const [, lang = '', rest = ''] = open;
    const attrs = Object.fromEntries([...rest.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
    const text = body.join('\n') + '\n';
    if (attrs['on'] === undefined) {
      shown.push({ lang, text, line: start + 1 });
      continue;
    }
    const on = attrs['on'];
    if (lang !== 'sh' || (on !== 'primary' && on !== 'secondary' && on !== 'both') || !attrs['step']) {
      throw new Error(`line ${start + 1}: a runnable block is \`\`\`sh on=primary|secondary|both step=NAME, not ${JSON.stringify(lines[start])}`);
    }
    runnable.push({ step: attrs['step'], on, text, line: start + 1 });
  }
  const steps = runnable.map((b) => b.step);
  const twice = steps.filter((s, k) => steps.indexOf(s) !== k);
  if (twice.length > 0) throw new Error(`steps named twice: ${twice.join(', ')}`);
  return { runnable, shown };
}

/** `text` with every [from, to] replaced, in order (longer paths first where one is a prefix of another). */
export function substitute(text: string, pairs: ReadonlyArray<readonly [string, string]>): string {
  let out = text;
  for (const [from, to] of pairs) out = out.split(from).join(to);
  return out;
}
