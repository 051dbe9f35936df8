#!/usr/bin/env node
// Same as make_tokenizer_fixtures.py, with the npm package `tokenizers` (Hugging Face's Node
// bindings of the same Rust core), for machines without Python's package. Install it outside the
// repo and point NODE_PATH there:
//   npm install --prefix /tmp/hftok tokenizers@0.23.2
//   NODE_PATH=/tmp/hftok/node_modules node tests/parity/make_tokenizer_fixtures.js \
//       --tokenizer tests/fixtures/tokenizer/deepseek_like.tokenizer.json --name deepseek_like
'use strict';
const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const args = {texts: path.join(__dirname, 'tokenizer_texts.json'),
                outDir: path.join(__dirname, '..', 'fixtures', 'tokenizer'), copy: false};
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a === '--tokenizer') args.tokenizer = argv[++i];
    else if (a === '--name') args.name = argv[++i];
    else if (a === '--texts') args.texts = argv[++i];
    else if (a === '--out-dir') args.outDir = argv[++i];
    else if (a === '--copy-tokenizer') args.copy = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.tokenizer || !args.name) throw new Error('need --tokenizer FILE --name NAME');
  return args;
}

// One text per line, so diffs of regenerated fixtures stay readable.
function formatFixture(f) {
  const table = (m) => '{\n' + Object.entries(m).map(([t, ids]) =>
    `  ${JSON.stringify(t)}: ${JSON.stringify(ids)}`).join(',\n') + '\n }';
  return `{\n "tokenizer": ${JSON.stringify(f.tokenizer)},\n "generator": ${JSON.stringify(f.generator)},\n` +
         ` "ids": ${table(f.ids)},\n "ids_with_special_tokens": ${table(f.ids_with_special_tokens)}\n}\n`;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const {Tokenizer} = require('tokenizers');
  const version = require('tokenizers/package.json').version;
  const tok = Tokenizer.fromFile(args.tokenizer);
  const texts = JSON.parse(fs.readFileSync(args.texts, 'utf8')).texts;
  const fixture = {tokenizer: `${args.name}.tokenizer.json`, generator: `tokenizers ${version} (node)`,
                   ids: {}, ids_with_special_tokens: {}};
  for (const t of texts) {
    fixture.ids[t] = (await tok.encode(t, null, {addSpecialTokens: false})).getIds();
    fixture.ids_with_special_tokens[t] = (await tok.encode(t, null, {addSpecialTokens: true})).getIds();
  }
  fs.mkdirSync(args.outDir, {recursive: true});
  const out = path.join(args.outDir, `${args.name}.ids.json`);
  fs.writeFileSync(out, formatFixture(fixture));
  if (args.copy) fs.copyFileSync(args.tokenizer, path.join(args.outDir, fixture.tokenizer));
  console.error(`wrote ${out}: ${texts.length} texts`);
}

main().catch((e) => { console.error(e.message); process.exit(1); });
