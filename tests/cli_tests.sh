#!/bin/sh
# CLI tests: help texts, impossible flags, bad model and dataset files (one clear line naming the file and a
# non-zero exit), info numbers, and an integration run that trains ResNet-20 briefly on a Fashion-MNIST subset
# and asserts an accuracy floor. Under EENN_ASAN=1 the integration run is replaced by a tiny train + eval.
B=${1:-build}
E="$B/eenn"
DATA=${EENN_DATA:-/usr/share/datasets/fashion-mnist}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL cli: $*"; }

# expect_fail DESCRIPTION NEEDLE CMD...: exit 1 (a failure), exactly one stderr line, containing NEEDLE
# expect_usage DESCRIPTION NEEDLE CMD...: the same with exit 2 (the command line is wrong)
expect_fail() { want_rc=1; check_fail "$@"; }
expect_usage() { want_rc=2; check_fail "$@"; }
check_fail() {
    what=$1; needle=$2; shift 2
    "$@" >"$T/out" 2>"$T/err"; rc=$?
    if [ "$rc" -ne "$want_rc" ]; then bad "$what: exit $rc, expected $want_rc ($(cat "$T/err"))"; return; fi
    if [ "$(wc -l <"$T/err")" -ne 1 ]; then bad "$what: expected one error line, got: $(cat "$T/err")"; return; fi
    if ! grep -q -- "$needle" "$T/err"; then bad "$what: '$needle' not in: $(cat "$T/err")"; return; fi
    ok
}

for c in train eval info bench calibrate infer analyze report serve; do
    if "$E" $c --help | grep -q "usage: eenn $c"; then ok; else bad "$c --help"; fi
done
"$E" --help >/dev/null && ok || bad "--help"
expect_usage "unknown command" "unknown command 'frobnicate'" "$E" frobnicate
expect_usage "zero epochs" "train --epochs: '0' is not an integer" "$E" train --epochs 0
expect_usage "bad lr" "train --lr: 'fast'" "$E" train --lr fast
expect_usage "unknown flag" "unknown option '--colour'" "$E" train --colour
expect_usage "bad milestones" "train --milestones" "$E" train --milestones 2,3
expect_usage "bad augment" "train --augment: 'rotate' is not crop+flip" "$E" train --augment rotate
expect_fail "unknown arch" "unknown architecture 'resnet7'" "$E" info --arch resnet7
expect_fail "missing model" "$T/none.eenn: cannot open" "$E" eval "$T/none.eenn"
expect_usage "missing value" "train --epochs: missing value" "$E" train --epochs
expect_usage "bad value after =" "eval --batch: 'x' is not an integer" "$E" eval m.eenn --batch=x
expect_usage "no model" "calibrate: give one model file" "$E" calibrate
expect_usage "unknown short option" "unknown option '-x'" "$E" report -x
"$E" info --arch=resnet20 --input=1x28x28 --summary | grep -q "272186 parameters" && ok || bad "info --opt=value"
"$E" info --summary -- --arch >/dev/null 2>"$T/err"; grep -q -- "--arch: cannot open" "$T/err" && ok || bad "-- ends the options: $(cat "$T/err")"
printf 'input c=1 h=28 w=28\nconv out=16384 k=28\nconv out=65536 k=65536 pad=32768 bias=0\ngap\nlinear out=10\n' >"$T/huge.txt"
expect_fail "weights past the limit" "huge.txt: conv 'conv1': 65536 x 16384 x 65536 x 65536" "$E" train --arch-file "$T/huge.txt" --epochs 1
expect_fail "weights past the limit (info)" "more than the 1073741824 a layer may have" "$E" info --arch-file "$T/huge.txt"
printf 'input c=1 h=28 w=28\nconv out=8 k=3 size=big\n' >"$T/arch.txt"
expect_fail "bad arch file" "arch.txt:2: unknown key 'size'" "$E" info --arch-file "$T/arch.txt"

"$E" info --arch resnet56 --json | grep -q '"params":855770' && ok || bad "info resnet56 --json params"
"$E" info --arch mobilenet --summary | grep -q "3217226 parameters" && ok || bad "info mobilenet params"

# bad dataset files: truncated and corrupted gzip, wrong magic
mkdir -p "$T/d1" "$T/d2"
head -c 5000 "$DATA/t10k-images-idx3-ubyte.gz" >"$T/d1/t10k-images-idx3-ubyte.gz"
cp "$DATA/t10k-labels-idx1-ubyte.gz" "$T/d1/"
cp "$DATA/t10k-labels-idx1-ubyte.gz" "$T/d2/t10k-images-idx3-ubyte.gz"
cp "$DATA/t10k-labels-idx1-ubyte.gz" "$T/d2/"

if [ -n "$EENN_ASAN" ]; then
    # tiny train + eval under AddressSanitizer / UBSan
    "$E" train --arch-file /dev/stdin --subset 512 --val 64 --test-subset 256 --epochs 3 --batch 32 --lr 0.05 \
        --schedule cosine --out "$T/m.eenn" \
        --json >"$T/train.json" 2>"$T/train.log" <<'ARCH' && ok || { bad "tiny train under ASan"; cat "$T/train.log"; }
arch tiny
input c=1 h=28 w=28
conv out=8 k=3 stride=2 pad=1 bias=0
bn
relu name=r
conv out=8 k=3 pad=1 bias=0
bn
add in=bn4,r
relu
maxpool k=2 stride=2
dropout p=0.1
flatten
linear out=10
ARCH
else
    # integration: ResNet-20 on 6000 Fashion-MNIST images, 3 epochs (70-80%, depending on the CPU's convolution
    # kernels: 70.65% with oneDNN's AVX-512 kernels, about 80% with the direct AVX2 kernel); the floor is 60%
    "$E" train --arch resnet20 --subset 6000 --val 1000 --test-subset 2000 --epochs 3 --schedule cosine --out "$T/m.eenn" --json \
        >"$T/train.json" 2>"$T/train.log" && ok || { bad "integration training"; cat "$T/train.log"; }
    cat "$T/train.log"
fi
acc=$(sed -E 's/.*"test_acc":([0-9.]+).*/\1/' "$T/train.json")
floor=${EENN_ASAN:+30}; floor=${floor:-60}
echo "trained: test accuracy $acc% (floor $floor%)"
awk -v a="$acc" -v f="$floor" 'BEGIN { exit !(a >= f) }' && ok || bad "accuracy $acc below the floor $floor"
"$E" eval "$T/m.eenn" --json >"$T/eval.json" && ok || bad "eval of the trained model"
grep -q '"acc":' "$T/eval.json" && ok || bad "eval --json output"
# a path with a quote and a backslash stays valid JSON (escaped)
cp "$T/m.eenn" "$T/we\"ird\\name.eenn"
"$E" eval "$T/we\"ird\\name.eenn" --json | grep -qF '"model":"'"$T"'/we\"ird\\name.eenn"' && ok ||
    bad "eval --json escapes the model path: $("$E" eval "$T/we\"ird\\name.eenn" --json | head -c 300)"
"$E" info "$T/m.eenn" >/dev/null && ok || bad "info of a model file"
# resume: one more epoch from the checkpoint
if [ -z "$EENN_ASAN" ]; then
    "$E" train --arch resnet20 --subset 1000 --val 200 --test-subset 500 --epochs 1 --out "$T/r.eenn" 2>/dev/null >/dev/null
    "$E" train --arch resnet20 --subset 1000 --val 200 --test-subset 500 --epochs 2 --out "$T/r.eenn" --resume \
        2>"$T/resume.log" >/dev/null && grep -q "epoch 2/2" "$T/resume.log" && ! grep -q "epoch 1/2" "$T/resume.log" && ok ||
        bad "resume from checkpoint: $(cat "$T/resume.log")"
fi
# text: a small generated corpus in the TSV format; training shows progress, writes its checkpoint, resumes,
# prints --json; internal classifiers on it; infer reads standard input; bad lines name the file and line
mkdir -p "$T/txt"
awk 'BEGIN { srand(7); for (i = 0; i < 400; i++) { f = (i < 300) ? "train" : "test"; s = i % 2; n = int(rand() * 1000);
    if (s) t = "Subject: cheap pills offer " n "\\n\\nbuy now, limited offer!!!";
    else t = "Subject: meeting notes " n "\\n\\nthe project review moves to thursday";
    print (s ? "spam" : "ham") "\t" t > ("'"$T"'/txt/" f ".tsv") } }'
"$E" train --data "$T/txt" --text-length 64 --epochs 1 --out "$T/tx.eenn" 2>"$T/tx.log" >/dev/null &&
    grep -q "^epoch 1/1 step" "$T/tx.log" && grep -q "^training textcnn" "$T/tx.log" && [ -f "$T/tx.eenn.ckpt" ] &&
    "$E" train --data "$T/txt" --text-length 64 --epochs 2 --out "$T/tx.eenn" --resume --json 2>"$T/tx2.log" >"$T/tx.json" &&
    grep -q "epoch 2/2" "$T/tx2.log" && ! grep -q "epoch 1/2" "$T/tx2.log" && grep -q '"test_acc"' "$T/tx.json" &&
    grep -aq 'ham,spam' "$T/tx.eenn" && ok || { bad "text training"; cat "$T/tx.log" "$T/tx2.log"; }
"$E" train --mode ic-only --from "$T/tx.eenn" --data "$T/txt" --epochs 1 --out "$T/txi.eenn" 2>/dev/null >/dev/null &&
    "$E" calibrate "$T/txi.eenn" >/dev/null && "$E" eval "$T/txi.eenn" --json | grep -q '"early_exit"' &&
    printf 'Subject: cheap pills offer 5\\n\\nbuy now\nSubject: meeting notes\n' | "$E" infer "$T/txi.eenn" - --json >"$T/txinf.json" &&
    [ "$(grep -c '"name":"' "$T/txinf.json")" -eq 2 ] && ok || bad "text internal classifiers: $(cat "$T/txinf.json")"
# logistic regression on a bag of words (examples/text-logreg.txt) learns the corpus; a cascade runs it first
"$E" train --data "$T/txt" --arch-file examples/text-logreg.txt --lr 0.03 --epochs 5 --out "$T/txlr.eenn" --json \
    2>/dev/null >"$T/txlr.json" && grep -q '"test_acc":100.0000' "$T/txlr.json" &&
    "$E" train --data "$T/txt" --epochs 1 --out "$T/tx512.eenn" 2>/dev/null >/dev/null &&
    "$E" cascade "$T/txlr.eenn" "$T/tx512.eenn" -o "$T/txc.eenn" --data "$T/txt" >/dev/null &&
    "$E" eval "$T/txc.eenn" --json | grep -q '"early_exit"' && ok || bad "text logistic regression and cascade: $(cat "$T/txlr.json")"
expect_fail "internal classifiers on a model that has them" "txi.eenn: the network already has early exits" \
    "$E" train --mode ic-only --from "$T/txi.eenn" --data "$T/txt" --epochs 1 --out "$T/txii.eenn"
# every line of a text input by default (100 test emails), --limit N the first N
[ "$("$E" infer "$T/txi.eenn" "$T/txt/test.tsv" --json | grep -c '"name":"')" -eq 100 ] &&
    [ "$("$E" infer "$T/txi.eenn" "$T/txt/test.tsv" --limit 7 --json | grep -c '"name":"')" -eq 7 ] && ok ||
    bad "text infer: all lines by default, --limit N"
mkdir -p "$T/txbad" && cp "$T/txt/train.tsv" "$T/txbad/" && printf 'ham\tfine\nham no tab here\n' >"$T/txbad/test.tsv"
expect_fail "a text line without a tab" "$T/txbad/test.tsv:2: no tab between the label and the text" "$E" eval "$T/tx.eenn" --data "$T/txbad"
printf 'ham\tfine\neggs\tunknown label\n' >"$T/txbad/test.tsv"
expect_fail "a text label train.tsv lacks" "test.tsv:2: label 'eggs' is not one of train.tsv's" "$E" eval "$T/tx.eenn" --data "$T/txbad"
expect_usage "image augmentation on text" "crops and flips are for images" "$E" train --data "$T/txt" --augment flip
# the SDN pipeline: SDN training, calibration, per-exit evaluation, inference on images and dataset files,
# measured early exits
FIX=tests/fixtures
if [ -n "$EENN_ASAN" ]; then
    sdn_train="--arch-file $T/tiny.txt --ics r,relu6 --subset 512 --val 128 --test-subset 128 --epochs 2 --batch 32 --lr 0.05"
    printf 'arch tiny\ninput c=1 h=28 w=28\nconv out=8 k=3 stride=2 pad=1 bias=0\nbn\nrelu name=r\nconv out=8 k=3 pad=1 bias=0\nbn\nadd in=bn4,r\nrelu\nmaxpool k=2 stride=2\nflatten\nlinear out=10\n' >"$T/tiny.txt"
else
    sdn_train="--arch resnet20 --subset 3000 --val 1000 --test-subset 1000 --epochs 2"
fi
"$E" train --mode sdn $sdn_train --schedule cosine --out "$T/s.eenn" >/dev/null 2>"$T/sdn.log" && ok || { bad "SDN training"; cat "$T/sdn.log"; }
"$E" calibrate "$T/s.eenn" --max-drop 1% >"$T/cal.txt" && grep -q "stored in" "$T/cal.txt" && ok || bad "calibrate: $(cat "$T/cal.txt")"
"$E" eval "$T/s.eenn" --sweep >"$T/ev.txt" && grep -q "^  IC1 " "$T/ev.txt" && grep -q "calibrated policy" "$T/ev.txt" && ok ||
    bad "eval of an SDN: $(cat "$T/ev.txt")"
"$E" eval "$T/m.eenn" "$T/s.eenn" >"$T/cmp.txt" && grep -q "^final" "$T/cmp.txt" && ok || bad "eval comparison: $(cat "$T/cmp.txt")"
"$E" infer "$T/s.eenn" $FIX/fmnist-test0-label9.png $FIX/fmnist-test1-label2-56px.jpg "$DATA/t10k-images-idx3-ubyte.gz" \
    --limit 3 --json >"$T/inf.json" && [ "$(grep -c '"exit":"' "$T/inf.json")" -eq 5 ] && ok || bad "infer: $(cat "$T/inf.json")"
"$E" bench --exits "$T/s.eenn" --n 64 --json >"$T/bx.json" && grep -q '"flops_speedup"' "$T/bx.json" && ok || bad "bench --exits"
# exit policies: every kind and method side by side, a per-exit entropy policy for a budget, anytime inference
"$E" compare "$T/s.eenn" --test-subset 300 --speed-n 8 --json >"$T/cmp.json" 2>/dev/null &&
    [ "$(grep -o '"method":' "$T/cmp.json" | wc -l)" -eq 11 ] && ok || bad "compare: $(cat "$T/cmp.json")"
"$E" compare "$T/s.eenn" --test-subset 300 --speed-n 0 --budget 30%,60% >"$T/cmpb.txt" 2>/dev/null &&
    grep -q "within 60.0% of the CNN" "$T/cmpb.txt" && grep -q "^margin, T, per-exit" "$T/cmpb.txt" && ok || bad "compare --budget"
# EENets: exits with learned confidence branches and the cost-aware loss; the trained rule is the model's policy
if [ -n "$EENN_ASAN" ]; then
    ee_train="--arch-file $T/tiny.txt --exits 1 --subset 512 --val 128 --test-subset 128 --epochs 2 --batch 32"
else
    ee_train="--arch resnet20 --exits 3 --distribution linear --subset 2000 --val 500 --test-subset 500 --epochs 2"
fi
"$E" train --mode eenet $ee_train --loss two-stage --stage1-epochs 1 --lambda 0.5 --out "$T/e.eenn" >/dev/null 2>"$T/ee.log" &&
    grep -q "exits at confidence > 0.5: val acc" "$T/ee.log" && ok || { bad "EENet training"; cat "$T/ee.log"; }
"$E" eval "$T/e.eenn" >"$T/eev.txt" && grep -q "rule learned in training: learned confidence above 0.5" "$T/eev.txt" &&
    grep -q "paper cost" "$T/eev.txt" && ok || bad "eval of an EENet: $(cat "$T/eev.txt")"
"$E" info "$T/e.eenn" --text | grep -q "confidence=ee1.conf" && ok || bad "the confidence link in the architecture text"
"$E" compare "$T/s.eenn" "$T/e.eenn" --methods maxprob,confidence --test-subset 300 --speed-n 4 --chart "$T/c.html" \
    >"$T/cmpe.txt" 2>/dev/null && grep -q "^all models" "$T/cmpe.txt" && grep -q "confidence > 0.5 (EENet)" "$T/cmpe.txt" &&
    grep -q "<svg" "$T/c.html" && [ "$(grep -c "^$T/s.eenn .*confidence" "$T/cmpe.txt")" -eq 0 ] && ok ||
    bad "compare an SDN and an EENet: $(cat "$T/cmpe.txt")"
for b in 1 64; do
    # classes and exits must agree; confidences may differ in the last digit (other kernels at another batch size)
    "$E" infer "$T/e.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --limit 64 --batch $b --json | sed 's/"confidence":[0-9.]*,//' >"$T/einf$b.json"
done
cmp -s "$T/einf1.json" "$T/einf64.json" && [ "$(grep -c '"exit":"' "$T/einf1.json")" -eq 64 ] && ok ||
    bad "EENet exits at batch 1 and batch 64 differ"
# v4+ce: exit tags and the class-balanced confidence loss, one epoch
"$E" train --mode eenet $ee_train --epochs 1 --loss v4+ce --lambda 0.5 --out "$T/e4.eenn" >/dev/null 2>"$T/ee4.log" &&
    grep -q "exits at confidence > 0.5: val acc" "$T/ee4.log" && "$E" eval "$T/e4.eenn" >/dev/null && ok ||
    { bad "EENet training with v4+ce"; cat "$T/ee4.log"; }
expect_usage "unknown EENet loss" "is not v0, v1, v2, two-stage, v1+ce, v2+ce, v4 or v4+ce" "$E" train --mode eenet --loss v3
expect_fail "confidence policy on an SDN" "needs exits with a learned confidence branch" "$E" calibrate "$T/s.eenn" --kind confidence
expect_usage "lambda without eenet" "only with --mode eenet" "$E" train --lambda 0.5
expect_usage "first stage as long as the run" "must be below --epochs" "$E" train --mode eenet --loss two-stage --stage1-epochs 5 --epochs 5
expect_usage "unknown distribution" "is not fine, linear, pareto or gold_ratio" "$E" train --mode eenet --distribution quadratic
expect_usage "unknown method" "no method 'best'" "$E" compare "$T/s.eenn" --methods best
expect_usage "compare with two targets" "exclude each other" "$E" compare "$T/s.eenn" --budget 50% --max-drop 1%
expect_usage "calibrate an unknown kind" "is not maxprob, entropy, margin or confidence" "$E" calibrate "$T/s.eenn" --kind softmax
cp "$T/s.eenn" "$T/s2.eenn"
"$E" calibrate "$T/s2.eenn" --kind entropy --per-exit --temperature --budget 50% --json >"$T/cal2.json" &&
    grep -q '"policy":"kind=entropy heads=[0-9]* fallback=0 per_exit=1 temperature_fitted=1 target=budget:0.5' "$T/cal2.json" &&
    "$E" eval "$T/s2.eenn" --json | grep -q '"policy":"entropy, ' && ok || bad "calibrate --kind entropy --per-exit: $(cat "$T/cal2.json")"
# learned exit policies (Bolukbasi et al.): gates fitted on validation, stored, shown and run for real
cp "$T/s.eenn" "$T/s3.eenn"
"$E" policy "$T/s3.eenn" --lambda 0.05 >"$T/pol.txt" && grep -q "learned gates on the exits' uncertainty (Bolukbasi" "$T/pol.txt" &&
    "$E" info "$T/s3.eenn" --summary | grep -q "^exit policy: learned gates" &&
    "$E" eval "$T/s3.eenn" --json | grep -q '"policy":"learned gates' && ok || bad "policy --lambda: $(cat "$T/pol.txt")"
for b in 1 64; do
    "$E" infer "$T/s3.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --limit 64 --batch $b --json | sed 's/"confidence":[0-9.]*,//' >"$T/pinf$b.json"
done
cmp -s "$T/pinf1.json" "$T/pinf64.json" && ok || bad "learned-gate exits at batch 1 and batch 64 differ"
"$E" policy "$T/s.eenn" --lambda 0,0.05,0.5 --test-subset 200 --json >"$T/polc.json" 2>/dev/null &&
    [ "$(grep -o '"lambda":' "$T/polc.json" | wc -l)" -eq 3 ] && ok || bad "policy lambda curve: $(cat "$T/polc.json")"
"$E" policy "$T/s3.eenn" --budget 60% --dry-run --json | grep -q '"stored":false' && ok || bad "policy --budget --dry-run"
expect_usage "policy without lambda or target" "give --lambda X, --max-drop X or --budget X" "$E" policy "$T/s3.eenn"
expect_usage "policy with lambda and target" "exclude each other" "$E" policy "$T/s3.eenn" --lambda 0.1 --budget 50%
expect_usage "policy with a negative lambda" "not a list of numbers" "$E" policy "$T/s3.eenn" --lambda -1
expect_usage "threshold calibration of gates" "eenn policy fits them" "$E" calibrate "$T/s3.eenn" --kind gate
# JEI-DNN: ICs and gates learned on the frozen CNN; the gates are the model's policy; calibration error and
# conformal sets in eval
if [ -n "$EENN_ASAN" ]; then jei_ics="--ics r,relu6"; else jei_ics=""; fi
"$E" train --mode jei --from "$T/m.eenn" $jei_ics --subset 1000 --val 300 --test-subset 300 --epochs 2 --warmup-epochs 1 \
    --phase-batches 4 --out "$T/j.eenn" >/dev/null 2>"$T/jei.log" && grep -q "exits at the JEI gates: val acc" "$T/jei.log" &&
    "$E" eval "$T/j.eenn" --json >"$T/jev.json" && grep -q '"policy":"learned gates on the exits. uncertainty (JEI-DNN)' "$T/jev.json" &&
    grep -q '"conformal":{"alpha":0.05,"coverage":' "$T/jev.json" && grep -q '"ece":' "$T/jev.json" && ok ||
    { bad "JEI-DNN training: $(cat "$T/jev.json")"; cat "$T/jei.log"; }
for b in 1 64; do
    "$E" infer "$T/j.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --limit 64 --batch $b --json | sed 's/"confidence":[0-9.]*,//' >"$T/jinf$b.json"
done
cmp -s "$T/jinf1.json" "$T/jinf64.json" && ok || bad "JEI exits at batch 1 and batch 64 differ"
"$E" compare "$T/j.eenn" --methods maxprob,bolukbasi,jei --test-subset 200 --speed-n 0 >"$T/jcmp.txt" 2>/dev/null &&
    grep -q "^JEI-DNN gates (trained)" "$T/jcmp.txt" && grep -q "^learned gates (Bolukbasi)" "$T/jcmp.txt" && ok ||
    bad "compare a JEI model: $(cat "$T/jcmp.txt")"
# network selection: a cascade of trained networks in one file, learned gates between them
"$E" cascade "$T/m.eenn" "$T/s.eenn" -o "$T/casc.eenn" --budget 80% --json >"$T/casc.json" 2>/dev/null &&
    grep -q '"networks":2' "$T/casc.json" && "$E" eval "$T/casc.eenn" --json | grep -q '"policy":"learned gates' && ok ||
    bad "cascade: $(cat "$T/casc.json")"
for b in 1 64; do
    "$E" infer "$T/casc.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --limit 64 --batch $b --json | sed 's/"confidence":[0-9.]*,//' >"$T/cinf$b.json"
done
cmp -s "$T/cinf1.json" "$T/cinf64.json" && ok || bad "cascade exits at batch 1 and batch 64 differ"
"$E" bench --exits "$T/casc.eenn" --n 32 --json | grep -q '"flops_speedup"' && ok || bad "bench --exits of a cascade"
# three networks, the middle one a copy of the first: the paper's DAG lets the gate after the first jump to the last
# when the last is the most accurate (by 2 points on validation; the two briefly trained networks here are not
# always in that order, and never in the sanitizer run)
"$E" cascade "$T/m.eenn" "$T/m.eenn" "$T/s.eenn" -o "$T/casc3.eenn" --lambda 0.05 --json >"$T/casc3.json" 2>/dev/null
want_jump=$(sed -E 's/.*"val_acc":\[([0-9.]+),[^]]*,([0-9.]+)\].*/\1 \2/' "$T/casc3.json" | awk '{ print ($2 > $1 + 2) }')
[ -n "$EENN_ASAN" ] && want_jump=0
grep -q '"networks":3' "$T/casc3.json" && { [ "$want_jump" != 1 ] || grep -q '"jumped":0\.[0-9]*[1-9]' "$T/casc3.json"; } &&
    "$E" info "$T/casc3.eenn" --summary | grep -q "jump gate after exit 1 to exit 3" && ok || bad "cascade with jumps: $(cat "$T/casc3.json")"
for b in 1 64; do
    "$E" infer "$T/casc3.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --limit 64 --batch $b --json | sed 's/"confidence":[0-9.]*,//' >"$T/c3inf$b.json"
done
cmp -s "$T/c3inf1.json" "$T/c3inf64.json" && ok || bad "cascade exits with jumps at batch 1 and batch 64 differ"
"$E" cascade "$T/m.eenn" "$T/m.eenn" "$T/s.eenn" -o "$T/casc3n.eenn" --lambda 0.05 --no-jumps --json 2>/dev/null |
    grep -q '"jumped":0.0000' && ok || bad "cascade --no-jumps"
expect_usage "cascade of one network" "give 2 to 8 trained networks" "$E" cascade "$T/m.eenn" -o "$T/x.eenn"
expect_usage "cascade without -o" "give the file to write" "$E" cascade "$T/m.eenn" "$T/m.eenn"
# SideNet: one side classifier on the frozen CNN; the analysis gives each exit's own calibration error
if [ -n "$EENN_ASAN" ]; then side_at="--at r"; else side_at=""; fi
"$E" train --mode sidenet --from "$T/m.eenn" $side_at --hidden 16 --pool 2 --subset 1000 --val 300 --test-subset 300 \
    --epochs 1 --out "$T/side.eenn" >/dev/null 2>"$T/side.log" && grep -q "^SideNet after" "$T/side.log" &&
    "$E" info "$T/side.eenn" --json | grep -q '"side.fc2"' && "$E" calibrate "$T/side.eenn" >/dev/null &&
    "$E" analyze "$T/side.eenn" --test-subset 200 --train-subset 500 2>/dev/null | grep -q "own calibration error" && ok ||
    { bad "SideNet training"; cat "$T/side.log"; }
expect_usage "sidenet options without sidenet" "only with --mode sidenet" "$E" train --hidden 8
expect_usage "sidenet at no node" "no node named 'nowhere'" "$E" train --mode sidenet --from "$T/m.eenn" --at nowhere
expect_usage "jei without a CNN" "needs --from" "$E" train --mode jei
expect_usage "jei warm-up as long as the run" "must be below --epochs" "$E" train --mode jei --from "$T/m.eenn" --warmup-epochs 3 --epochs 3
expect_usage "warm-up without jei" "only with --mode jei" "$E" train --warmup-epochs 1
# risk control: a guaranteed threshold stored and shown, and the split-based check of the guarantee
"$E" calibrate "$T/s2.eenn" --risk 5% --method ltt --delta 0.2 >"$T/rc.txt" && grep -q "guarantee (LTT): gap risk at most 5% with probability 0.8" "$T/rc.txt" &&
    "$E" info "$T/s2.eenn" --summary | grep -q "^exit policy: .*guarantee (LTT)" &&
    "$E" eval "$T/s2.eenn" | grep -q "guarantee (LTT)" && ok || bad "calibrate --risk: $(cat "$T/rc.txt")"
"$E" calibrate "$T/s2.eenn" --risk 5% --label-free --method crc --json | grep -q '"policy":"kind=maxprob .* guarantee=crc risk=consistency epsilon=0.05' &&
    ok || bad "calibrate --risk --label-free"
"$E" riskcheck "$T/s.eenn" --risk 2%,5% --splits 20 --json >"$T/rk.json" 2>/dev/null &&
    [ "$(grep -o '"method":' "$T/rk.json" | wc -l)" -eq 8 ] && grep -q '"guarantee_holds":' "$T/rk.json" && ok || bad "riskcheck: $(cat "$T/rk.json")"
expect_usage "risk options without --risk" "go with --risk" "$E" calibrate "$T/s2.eenn" --method ltt
expect_usage "risk with a budget" "do not apply" "$E" calibrate "$T/s2.eenn" --risk 1% --budget 50%
if [ -z "$EENN_ASAN" ]; then # ResNet-20's exits: IC2 at 36% of the CNN, IC3 at 45%
    "$E" infer "$T/s.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --q 1.01 --limit 6 --deadline 40% --json >"$T/dl.json" &&
        [ "$(grep -c '"stopped_by":"deadline"' "$T/dl.json")" -eq 6 ] && [ "$(grep -c '"exit":"IC2"' "$T/dl.json")" -eq 6 ] &&
        ok || bad "infer --deadline: $(cat "$T/dl.json")"
    "$E" infer "$T/s.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --q 1.01 --limit 20 --batch 20 --batch-budget 30% --json >"$T/bb.json" &&
        awk '/"cost":/ { sub(/.*"cost":/, ""); sub(/,.*/, ""); c += $0; n++ } END { exit !(n == 20 && c / n <= 0.30 + 1e-6) }' "$T/bb.json" &&
        grep -q '"stopped_by":"budget"' "$T/bb.json" && ok || bad "infer --batch-budget: $(head -c 400 "$T/bb.json")"
    # a one-epoch SDN run trains (the IC weights ramp up within the epoch) instead of diverging
    "$E" train --arch resnet20 --mode sdn --subset 7000 --val 500 --test-subset 500 --epochs 1 --out "$T/one.eenn" \
        >/dev/null 2>"$T/one.log" && ok || bad "one-epoch SDN training: $(tail -1 "$T/one.log")"
    expect_fail "deadline below the first exit" "below the first exit" "$E" infer "$T/s.eenn" "$DATA/t10k-images-idx3-ubyte.gz" --limit 2 --deadline 5%
fi
# a custom architecture timed at its own input shape (5 classes: the random labels stay in range)
printf 'input c=2 h=12 w=12\nconv out=16 k=3 pad=1\nrelu\ngap\nlinear out=5\n' >"$T/tiny.arch"
"$E" bench --arch-file "$T/tiny.arch" --seconds 0.05 --json >"$T/ba.json" && grep -q '"input":"2x12x12","mode":"train"' "$T/ba.json" &&
    ok || bad "bench --arch-file: $(cat "$T/ba.json")"
"$E" bench --arch-file "$T/tiny.arch" --input 3x32x32 >/dev/null 2>"$T/ba.err"; [ $? -ne 0 ] && grep -q "drop --input" "$T/ba.err" &&
    ok || bad "bench --arch-file with --input should fail"
"$E" bench --arch-file "$T/tiny.arch" --no-train --batch 8 --chunk 3 --seconds 0.05 --json | grep -q '"batch":8' &&
    ok || bad "bench --chunk"
# no conv falls to oneDNN's reference loops (about 500x slower): with its full ISA, and limited to AVX2 as on an
# AVX2-only CPU, where nChw16c has no kernel (the blocked backward-weights of a 16 -> 64 and a 64 -> 64 stride-2
# conv then stay NHWC)
printf 'input c=3 h=16 w=16\nconv out=16 k=3 pad=1\nbn\nrelu\nconv out=64 k=3 pad=1\nbn\nrelu\nconv out=64 k=3 pad=1 stride=2\nrelu\ngap\nlinear out=5\n' >"$T/blk.arch"
for isa in DEFAULT AVX2; do
    ONEDNN_MAX_CPU_ISA=$isa ONEDNN_VERBOSE=1 "$E" bench --arch-file "$T/blk.arch" --conv onednn --batch 2 \
        --seconds 0.05 >"$T/vb.txt" 2>&1
    n=$(grep -c '^onednn_verbose,exec,cpu,convolution.*backward_weights' "$T/vb.txt")
    if [ "$n" -gt 0 ] && ! grep '^onednn_verbose,exec,cpu,convolution' "$T/vb.txt" | grep -q ',ref:'; then ok
    else bad "oneDNN ISA $isa: $n backward-weights calls, reference kernels: $(grep ',ref:' "$T/vb.txt" | head -n 2)"; fi
done
expect_usage "bench --chunk 0" "bench --chunk" "$E" bench --chunk 0
"$E" info --arch-file examples/textcnn-bow.txt | grep -q "2x1x512, 2 classes" && ok || bad "examples/textcnn-bow.txt"
# overthinking analysis and the HTML report; a backdoored SDN (trigger in 20% of the training images)
"$E" analyze "$T/s.eenn" --train-subset 300 --test-subset 400 >"$T/an.txt" && grep -q "wasteful effect" "$T/an.txt" &&
    grep -q "destructive effect" "$T/an.txt" && grep -q "^  confusion (z-score)" "$T/an.txt" && ok || bad "analyze: $(cat "$T/an.txt")"
"$E" analyze "$T/s.eenn" --train-subset 300 --test-subset 400 --json >"$T/an.json" 2>/dev/null &&
    grep -q '"destructive_frac":' "$T/an.json" && grep -q '"auroc":' "$T/an.json" && grep -q '"per_class_exits":' "$T/an.json" &&
    grep -q '"conformal":{"alpha":0.05,"coverage":' "$T/an.json" &&
    ok || bad "analyze --json: $(cat "$T/an.json")"
"$E" train --mode sdn $sdn_train --trigger 4 --target 3 --poison 0.2 --out "$T/bd.eenn" >/dev/null 2>"$T/bd.log" &&
    grep -q "backdoor: a 4x4 trigger stamped into" "$T/bd.log" && ok || { bad "backdoored training"; cat "$T/bd.log"; }
"$E" report "$T/bd.eenn" --train-subset 300 --test-subset 300 --gallery 4 -o "$T/report.html" >"$T/rep.txt" 2>"$T/rep.err" &&
    grep -q "report written to" "$T/rep.txt" && ok || bad "report: $(cat "$T/rep.txt" "$T/rep.err")"
# self-contained: no scripts, no external resources; charts and embedded images present
if grep -q "<svg" "$T/report.html" && grep -q "data:image/png;base64," "$T/report.html" && grep -q "Backdoor" "$T/report.html" &&
    ! grep -qi "<script\|https\?://\|<link\|@import\|url(" "$T/report.html"; then ok; else bad "report is not self-contained"; fi
# every chart: a title, then one sentence saying what it shows, then axis titles
nfig=$(grep -o "<figure><h3>" "$T/report.html" | wc -l)
ncap=$(grep -o "<figure><h3>[^<]*</h3><p class=\"cap\">[^<][^<]*</p>" "$T/report.html" | wc -l)
[ "$nfig" -ge 8 ] && [ "$nfig" -eq "$ncap" ] && ok || bad "every chart needs a title and a caption ($ncap of $nfig)"
if [ -n "$EENN_ASAN" ]; then :
elif command -v chromium >/dev/null 2>&1; then
    # the report in headless Chromium: no console messages, and a screenshot with coloured charts in it
    timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0 \
        --window-size=1000,12000 --screenshot="$T/shot.png" "file://$T/report.html" >/dev/null 2>"$T/chromium.log"
    if grep -q "CONSOLE" "$T/chromium.log"; then bad "report: console messages: $(grep CONSOLE "$T/chromium.log")"; else ok; fi
    stat=$("$B/tests/pngstat" "$T/shot.png") && echo "report screenshot (width height coloured-share): $stat" &&
        awk -v s="$stat" 'BEGIN { split(s, a, " "); exit !(a[1] == 1000 && a[3] > 0.02) }' && ok ||
        bad "report screenshot is blank or missing: $stat"
else
    echo "SKIP: chromium is not installed (apt-get install chromium), the report was not opened in a browser"
fi
expect_fail "analyze a CNN" "has no internal classifiers to analyse" "$E" analyze "$T/m.eenn"
expect_usage "bad trigger" "analyze --trigger: 'big' is not SIZE" "$E" analyze "$T/s.eenn" --trigger big --test-subset 10 --train-subset 10
expect_fail "calibrate a CNN" "has no internal classifiers" "$E" calibrate "$T/m.eenn"
expect_usage "ic-only without a CNN" "needs --from" "$E" train --mode ic-only
expect_usage "bad drop" "calibrate --max-drop: '150%' is more than 100%" "$E" calibrate "$T/s.eenn" --max-drop 150%
expect_fail "missing image" "$T/none.png: cannot read the image" "$E" infer "$T/s.eenn" "$T/none.png"
expect_fail "huge image" "30000x30000 pixels, larger than --max-image-side 8192" "$E" infer "$T/s.eenn" $FIX/huge-30000x30000.png


# edge and server: `eenn serve` on a free port; a split run gives the answers of local inference, bad requests get
# clear HTTP errors and leave the server working, a model that does not match and a server that is gone give
# degraded answers from the edge's own exits
if command -v curl >/dev/null; then
    M=models/resnet20-sdn.eenn
    IMG="$DATA/t10k-images-idx3-ubyte.gz"
    "$E" serve $M --listen 127.0.0.1:0 --max-body 2000000 --queue 1 2>"$T/serve.log" &
    spid=$!
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's|.*on http://127.0.0.1:\([0-9]*\);.*|\1|p' "$T/serve.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    U="http://127.0.0.1:$port"
    if [ -z "$port" ]; then bad "serve did not start: $(cat "$T/serve.log")"; else
        curl -s "$U/health" | grep -q '"status":"ok"' && ok || bad "serve /health"
        curl -s "$U/v1/info" | grep -q '"fingerprint":"[0-9a-f]\{16\}".*"split_points":\[{"node":' && ok || bad "serve /v1/info"
        "$E" infer $M "$IMG" --limit 300 --json >"$T/local.jsonl"
        "$E" infer $M "$IMG" --limit 300 --json --split s1.b3.add --server "$U" >"$T/split.jsonl" 2>"$T/split.err"
        cmp -s "$T/local.jsonl" "$T/split.jsonl" && ok || bad "split inference differs from local inference"
        grep -q "inputs answered here" "$T/split.err" && ! grep -q degraded "$T/split.err" && ok ||
            bad "split summary: $(cat "$T/split.err")"
        code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST --data-binary 'hello' "$U/v1/resume")
        [ "$code" = 400 ] && grep -q "not an eenn request" "$T/r" && ok || bad "garbage request: $code $(cat "$T/r")"
        head -c 3000000 /dev/zero >"$T/big"
        code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST --data-binary @"$T/big" "$U/v1/resume")
        [ "$code" = 413 ] && ok || bad "oversized request: $code $(cat "$T/r")"
        code=$(curl -s -o "$T/r" -w '%{http_code}' "$U/v1/classify")
        [ "$code" = 405 ] && ok || bad "GET /v1/classify: $code"
        code=$(curl -s -o "$T/r" -w '%{http_code}' "$U/v2/what")
        [ "$code" = 404 ] && ok || bad "unknown endpoint: $code"
        "$E" infer models/resnet20-iconly.eenn "$IMG" --limit 50 --split s1.b3.add --server "$U" >"$T/o" 2>"$T/e"
        grep -q "degraded" "$T/o" && grep -q "does not match" "$T/e" && ok || bad "a mismatched model: $(cat "$T/e")"
        curl -s -H 'Content-Type: image/png' --data-binary @$FIX/fmnist-test0-label9.png "$U/v1/classify" |
            grep -q '"class":9' && ok || bad "classify a PNG image"
        # a full queue (--queue 1): concurrent requests while a long one runs get 503 busy, the others their answer
        "$E" infer $M "$IMG" --limit 3000 --batch 1024 --split s1.b3.add --server "$U" >/dev/null 2>&1 &
        ipid=$!
        cpids=""
        for k in 1 2 3 4; do
            for i in $(seq 1 25); do
                curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: image/png' \
                    --data-binary @$FIX/fmnist-test0-label9.png "$U/v1/classify"
            done >"$T/codes$k" &
            cpids="$cpids $!"
        done
        wait $ipid $cpids
        cat "$T"/codes? >"$T/codes"
        grep -q 503 "$T/codes" && grep -q 200 "$T/codes" && ! grep -qv '^\(200\|503\)$' "$T/codes" && ok ||
            bad "a full queue: $(sort "$T/codes" | uniq -c | tr '\n' ' ')"
        curl -s "$U/health" | grep -q ok && ok || bad "the server stopped answering after bad requests"
        kill -TERM $spid; wait $spid && grep -q "stopping after" "$T/serve.log" && ok || bad "serve on SIGTERM: $(tail -1 "$T/serve.log")"
        "$E" infer $M "$IMG" --limit 50 --split s1.b3.add --server "$U" --timeout 500 >"$T/o" 2>"$T/e"
        grep -q "degraded" "$T/o" && ok || bad "a server that is gone: $(cat "$T/e")"
    fi
    kill $spid 2>/dev/null
    expect_usage "split without server" "--split and --server go together" "$E" infer $M "$IMG" --split s1.b3.add
    expect_fail "split inside a block" "cannot split at 's1.b2.1.relu'" "$E" infer $M "$IMG" --split s1.b2.1.relu --server http://127.0.0.1:1
    expect_usage "serve bad listen" "serve --listen: 'nohost' is not HOST:PORT" "$E" serve $M --listen nohost
    expect_usage "serve bad workers" "serve --workers: '17' is not an integer" "$E" serve $M --workers 17
else
    echo "SKIP: curl is not installed (apt-get install curl): the server was not tested"
fi


# hierarchical training: an edge process and the cloud process it starts, a short run that writes a whole model
expect_usage "hierarchical without a split" "give --split NODE" "$E" train --hierarchical --mode sdn
expect_usage "hierarchical CNN" "trains an SDN (--mode sdn)" "$E" train --hierarchical --split s1.b3.add
expect_usage "split without hierarchical" "only with --hierarchical" "$E" train --split s1.b3.add
expect_fail "hierarchical split before any exit" "no exit before it" "$E" train --hierarchical --mode sdn \
    --split stem.relu --subset 256 --val 64 --test-subset 64 --epochs 1
if "$E" train --hierarchical --split s1.b3.add --mode sdn --subset 256 --val 64 --test-subset 100 --epochs 1 --batch 64 \
    --out "$T/hier.eenn" >"$T/hier.out" 2>"$T/hier.err" && grep -q "test accuracy per exit" "$T/hier.out" &&
    grep -q "split training that sends the gradient back" "$T/hier.err" && "$E" eval "$T/hier.eenn" --subset 50 >/dev/null
then ok; else bad "hierarchical training: $(tail -3 "$T/hier.err")"; fi

# bad model files
size=$(wc -c <"$T/m.eenn")
head -c $((size / 2)) "$T/m.eenn" >"$T/trunc.eenn"
expect_fail "truncated model" "$T/trunc.eenn: truncated" "$E" eval "$T/trunc.eenn"
cp "$T/m.eenn" "$T/corrupt.eenn"
printf 'XXXX' | dd of="$T/corrupt.eenn" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_fail "corrupted model" "$T/corrupt.eenn: checksum mismatch" "$E" eval "$T/corrupt.eenn"
expect_fail "dataset as model" "not an eenn model file" "$E" eval "$DATA/t10k-labels-idx1-ubyte.gz"
expect_fail "truncated dataset" "$T/d1/t10k-images-idx3-ubyte.gz: truncated" "$E" eval "$T/m.eenn" --data "$T/d1"
expect_fail "labels as images" "$T/d2/t10k-images-idx3-ubyte.gz: not an IDX image file" "$E" eval "$T/m.eenn" --data "$T/d2"
expect_fail "missing dataset" "no dataset found" "$E" eval "$T/m.eenn" --data "$T"
mkdir -p "$T/d3" && cp "$DATA/t10k-images-idx3-ubyte.gz" "$T/d3/"
{ printf '\000\000\010\001\000\000\047\020\014'; head -c 9999 /dev/zero; } | gzip >"$T/d3/t10k-labels-idx1-ubyte.gz"
expect_fail "labels beyond the classes" "$T/d3 (test split) with $T/m.eenn: image 0 has label 12 but the network has 10 classes" \
    "$E" eval "$T/m.eenn" --data "$T/d3"
# training replicas in one process: 2 copies of the network, sharing the threads, with sync-BN and the same
# augmentation, end where one network with the whole batch does; with 2 threads a narrow network gets them by
# default; impossible combinations are usage errors
R="--arch resnet20 --subset 256 --test-subset 50 --val 0 --epochs 1 --batch 128 --lr 0.005"
"$E" train $R --threads 1 --out "$T/rp1.eenn" --json >"$T/rp1.json" 2>"$T/err" ||
    bad "replicas: the one-network run: $(cat "$T/err")"
"$E" train $R --threads 2 --out "$T/rp2.eenn" --json >"$T/rp2.json" 2>"$T/err" || bad "replicas: 2: $(cat "$T/err")"
"$B/tests/modeldiff" "$T/rp1.eenn" "$T/rp2.eenn" 2e-4 >"$T/md" && ok || bad "replicas: 2 differ from one network: $(cat "$T/md")"
grep -q '"replicas":1' "$T/rp1.json" && grep -q '"replicas":2' "$T/rp2.json" &&
    grep -q "2 replicas x 1 thread, sync-BN" "$T/err" && ok ||
    bad "replicas: --json or the start line: $(cat "$T/rp1.json" "$T/rp2.json" "$T/err")"
# more cores than replicas: they share them (4 threads, 2 replicas: 2 threads each), the same steps
"$E" train $R --threads 4 --replicas 2 --out "$T/rp4.eenn" 2>"$T/err" >"$T/rp4.out" || bad "replicas: 2 x 2: $(cat "$T/err")"
grep -q "2 replicas x 2 threads, sync-BN" "$T/err" && "$B/tests/modeldiff" "$T/rp1.eenn" "$T/rp4.eenn" 2e-4 >"$T/md" && ok ||
    bad "replicas: 2 x 2 threads: $(cat "$T/err" "$T/md")"
# the closing line without a validation split names none
grep -Eq '^resnet20: test accuracy [0-9.]+% \(loss [0-9.]+\) after 1 epochs in' "$T/rp4.out" && ok ||
    bad "train's closing line without validation: $(cat "$T/rp4.out")"
expect_usage "replicas above the batch" "3 replicas for a batch of 2" "$E" train $R --batch 2 --replicas 3
expect_usage "replicas 0" "--replicas" "$E" train $R --replicas 0
expect_usage "replicas with hierarchical training" "one process only" "$E" train $R --mode sdn --replicas 2 --hierarchical --split x
# data-parallel training over MPI (when this eenn was built with it and Open MPI's mpirun is here): 2 ranks with
# sync-BN and a global batch of 128 end where one process with a batch of 128 does; a rank killed mid-run stops
# the others (no hang) and leaves the last checkpoint whole; a failure on one rank is one line from that rank
if [ -z "$EENN_ASAN" ] && command -v mpirun >/dev/null && ldd "$E" | grep -q libmpi; then
    MPIRUN="mpirun -q --oversubscribe --bind-to none"
    [ "$(id -u)" -eq 0 ] && MPIRUN="$MPIRUN --allow-run-as-root"
    P="--arch resnet20 --subset 768 --test-subset 200 --val 0 --epochs 1 --batch 128 --no-augment --lr 0.005 --threads 1"
    "$E" train $P --out "$T/mp1.eenn" >/dev/null 2>&1 || bad "mpi: the one-process run"
    $MPIRUN -np 2 "$E" train $P --sync-bn --out "$T/mp2.eenn" --json >"$T/mp2.json" 2>"$T/mp2.err" || bad "mpi: 2 ranks: $(cat "$T/mp2.err")"
    $MPIRUN -np 2 "$E" train $P --out "$T/mp2l.eenn" >/dev/null 2>&1 || bad "mpi: 2 ranks without sync-BN"
    "$B/tests/modeldiff" "$T/mp1.eenn" "$T/mp2.eenn" 2e-4 >"$T/md" && ok || bad "mpi: 2 ranks with sync-BN differ from one process: $(cat "$T/md")"
    "$B/tests/modeldiff" "$T/mp1.eenn" "$T/mp2l.eenn" 2e-4 >/dev/null && bad "mpi: without sync-BN as close as with it" || ok
    grep -q '"parallel":{"ranks":2,"threads_per_rank":1,"sync_bn":true,"allreduces":6' "$T/mp2.json" && ok || bad "mpi: --json: $(cat "$T/mp2.json")"
    [ "$(grep -c 'training resnet20' "$T/mp2.err")" -eq 1 ] && ok || bad "mpi: progress from one rank only: $(cat "$T/mp2.err")"
    # resume the 2-rank checkpoint in one process (any number of ranks)
    "$E" train $P --epochs 2 --sync-bn --out "$T/mp2.eenn" --resume >"$T/out" 2>"$T/err" &&
        grep -q "epoch 2/2" "$T/err" && ! grep -q "epoch 1/2" "$T/err" && ok || bad "mpi: resume on 1 process: $(cat "$T/err")"
    # a rank killed after the first checkpoint: mpirun ends (non-zero) within seconds, the checkpoint loads
    K="--arch resnet20 --subset 1024 --test-subset 100 --val 0 --epochs 20 --batch 128 --no-augment --threads 1"
    $MPIRUN -np 2 "$E" train $K --out "$T/kill.eenn" >/dev/null 2>&1 &
    mp=$!
    i=0; while [ ! -f "$T/kill.eenn.ckpt" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    victim=$(pgrep -P $mp -f "eenn train" | tail -n 1)
    [ -n "$victim" ] && kill -9 "$victim"
    i=0; while kill -0 $mp 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $mp 2>/dev/null; then bad "mpi: a killed rank left the others hanging"; kill -9 $mp; pkill -9 -f "$T/kill.eenn"; else
        wait $mp; [ $? -ne 0 ] && ok || bad "mpi: a killed rank, yet mpirun exited 0"; fi
    "$E" info "$T/kill.eenn.ckpt" --summary >/dev/null 2>"$T/err" && ok || bad "mpi: the checkpoint after a kill: $(cat "$T/err")"
    # a failure on one rank (rank 0 cannot write its checkpoint): one line naming the rank, non-zero exit
    $MPIRUN -np 2 "$E" train $P --checkpoint "$T/no/such/dir/x.ckpt" --out "$T/x.eenn" >/dev/null 2>"$T/err"; rc=$?
    [ $rc -ne 0 ] && [ "$(grep -c 'eenn: ' "$T/err")" -eq 1 ] && grep -q "eenn: rank 0: .*x.ckpt" "$T/err" && ok ||
        bad "mpi: failure on one rank: exit $rc: $(cat "$T/err")"
    # the same binary without mpirun, and an impossible global batch
    expect_usage "mpi: batch below the ranks" "smaller than the number of ranks" $MPIRUN -np 2 "$E" train $P --batch 1
fi

# ONNX export: the command's own errors (tests/python/test_onnx_export.py checks what it writes)
"$E" export --help | grep -q "usage: eenn export" && ok || bad "export --help"
expect_usage "export without -o" "give the output directory with -o DIR" "$E" export models/resnet56-sdn.eenn
if [ -z "$EENN_ASAN" ]; then
    expect_fail "export of an uncalibrated model" "has no exit policy" "$E" export models/resnet56-cnn.eenn -o "$T/onnx"
fi

# int8: the command's errors, then a quantised ResNet-20 SDN: int8 convolutions, its policy recalibrated, and its
# accuracy on the first 1000 test images within a point of the float model's
"$E" quantize --help | grep -q "usage: eenn quantize" && ok || bad "quantize --help"
expect_usage "quantize without -o" "give the output file with -o OUT" "$E" quantize models/resnet20-sdn.eenn
expect_usage "quantize over its input" "would overwrite the float model" "$E" quantize models/resnet20-sdn.eenn -o models/resnet20-sdn.eenn
expect_usage "quantize: bad estimator" "is not max or percentile" "$E" quantize models/resnet20-sdn.eenn -o "$T/q.eenn" --estimator kl
expect_fail "quantize: missing model" "$T/none.eenn: cannot open" "$E" quantize "$T/none.eenn" -o "$T/q.eenn"
if [ -z "$EENN_ASAN" ]; then
    "$E" quantize models/resnet20-sdn.eenn -o "$T/q.eenn" --calib 200 --val 1000 --json >"$T/q.json" 2>"$T/err" &&
        grep -q '"int8_convs":21' "$T/q.json" && grep -q '"policy_recalibrated":true' "$T/q.json" && ok ||
        bad "quantize resnet20-sdn: $(cat "$T/q.json" "$T/err")"
    f=$("$E" eval models/resnet20-sdn.eenn --subset 1000 --conformal 0 --json | sed -E 's/.*\{"exit":"final","acc":([0-9.]+).*/\1/')
    q=$("$E" eval "$T/q.eenn" --subset 1000 --conformal 0 --json | sed -E 's/.*\{"exit":"final","acc":([0-9.]+).*/\1/')
    awk -v a="$q" -v b="$f" 'BEGIN { d = a - b; exit !(d <= 1 && d >= -1) }' && ok || bad "int8 ResNet-20: $q% vs float $f%"
    "$E" info "$T/q.eenn" | grep -q "int8" && ok || bad "info of an int8 model does not say int8"
    # an EENet's trained rule (confidence above 0.5) is not calibrated for a target: kept as it is
    "$E" quantize models/resnet20-eenet-l0.5.eenn -o "$T/qe.eenn" --calib 100 --val 500 --json >"$T/qe.json" 2>"$T/err" &&
        grep -q '"policy_recalibrated":false' "$T/qe.json" && ok || bad "quantize an EENet: $(cat "$T/qe.json" "$T/err")"
fi

# the published models: models/README.md's checksums, and each row's accuracy on the first 1000 test images
# as `eenn eval` measures it now (within 0.2 points: convolution kernels differ in rounding between CPUs)
rows=$(grep -E '^\| `[a-z0-9.-]+\.eenn`' models/README.md)
[ "$(echo "$rows" | grep -c .)" -eq "$(ls models/*.eenn | wc -l)" ] && ok || bad "models/README.md lists $(echo "$rows" | grep -c .) models, models/ holds $(ls models/*.eenn | wc -l)"
echo "$rows" | while IFS='|' read -r _ file _ _ _ _ _ sub sha _; do
    file=$(echo "$file" | tr -d ' `'); sha=$(echo "$sha" | tr -d ' `'); sub=$(echo "$sub" | tr -d ' %')
    echo "$sha  models/$file"
done >"$T/models.sha256"
sha256sum --quiet -c "$T/models.sha256" && ok || bad "models/README.md checksums"
if [ -z "$EENN_ASAN" ]; then
    echo "$rows" | while IFS='|' read -r _ file _ _ _ _ _ sub _; do
        file=$(echo "$file" | tr -d ' `'); sub=$(echo "$sub" | tr -d ' %')
        got=$("$E" eval "models/$file" --subset 1000 --conformal 0 --json | sed -E 's/.*"exits":\[.*\{"exit":"final","acc":([0-9.]+).*/\1/')
        awk -v a="$got" -v b="$sub" 'BEGIN { d = a - b; exit !(d <= 0.2 && d >= -0.2) }' ||
            echo "FAIL cli: models/$file: $got% on the first 1000 test images, models/README.md says $sub%"
    done >"$T/models.err"
    [ ! -s "$T/models.err" ] && ok || { cat "$T/models.err"; bad "published models' accuracy"; }
fi
echo "cli_tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
