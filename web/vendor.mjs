// vendor.mjs copies the player libraries from node_modules into
// static/vendor/, which the Go package embeds. npm runs it after
// `npm ci` / `npm install` in web/ (the postinstall script of package.json);
// scripts/run.sh and scripts/test.sh run that step when it is needed.

import { copyFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// The libraries, and their licenses (Apache-2.0), which go with them into
// the binary.
const files = [
  ['hls.js/dist/hls.min.js', 'hls.min.js'],
  ['hls.js/LICENSE', 'hls.js.LICENSE'],
  ['mpegts.js/dist/mpegts.js', 'mpegts.js'],
  ['mpegts.js/LICENSE', 'mpegts.js.LICENSE'],
];
mkdirSync(join(here, 'static', 'vendor'), { recursive: true });
for (const [from, to] of files) {
  copyFileSync(join(here, 'node_modules', from), join(here, 'static', 'vendor', to));
}
