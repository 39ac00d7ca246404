/**
 * `colo-agent config-reference`: the Markdown reference of every configuration key, rendered from
 * the convict schema. docs/configuration.md is exactly this output; test/docs.test.ts compares them,
 * so the checked-in reference cannot drift from the schema.
 */
import { configReference } from '../config/reference.js';

const INTRO = [
  '# Configuration reference',
  '',
  'Every key colo-agent accepts, with its default, environment variable and format. Files are YAML or',
  'JSON (`--config FILE`, repeatable); `colo-agent check-config --config FILE` validates one and prints',
  'the effective configuration. For what the keys mean together, see [concepts](concepts.md); for a',
  'working two-host setup, see [installation](installation.md).',
  '',
  '## Keys',
  '',
  '',
].join('\n');

/** Deterministic: the same text on every host and every run (no dates, no environment). */
export function configReferenceMarkdown(): string {
  return `${INTRO}${configReference()}`;
}
