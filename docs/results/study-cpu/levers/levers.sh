#!/usr/bin/env bash
# The lever and ablation runs of attempts.md (sections 2 to 4), from a finished
# `gravity run configs/study.yaml` folder: each lever changes one setting of the study; levers
# are kept only if they win on validation readers (choose.py); the ablation trains on each
# facet's pairs alone. On one H200 it took about 10 minutes (trainings side by side); on 2 CPU
# cores each training or evaluation of a system takes as long as in the study itself.
#   bash docs/results/study-cpu/levers/levers.sh [STUDY_FOLDER] [WORK_FOLDER]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
S=${1:-runs/study}
W=${2:-runs/study-levers}
mkdir -p "$W/models"
# Training settings of configs/study.yaml; the held-out books and the evaluation of the study.
cp "$HERE/train.yaml" "$W/train.yaml"
sed "s#BOOKS#$S/books-heldout.jsonl#" "$HERE/eval.yaml" > "$W/eval.yaml"

# Validation readers: 8 per country, seed 2 (training readers are seed 0, test readers seed 1);
# they are asked about the same 12 held-out books as the test readers.
rm -f "$W/heldout-val.jsonl"
for c in US BR JP IN; do
  gravity profiles sample --country $c --n 8 --seed 2 -o "$W/val-$c.jsonl"
  cat "$W/val-$c.jsonl" >> "$W/heldout-val.jsonl"
done

# Pairs: each facet alone (from the study's store: no new LLM call), contrasting negatives and
# twice the books per reader (new calls only for what the study did not write).
pairs() {  # name, generate flags...
  mkdir -p "$W/p-$1" && cp "$S/pairs-gravity/store.sqlite" "$W/p-$1/"
  gravity generate --profiles "$S/profiles.jsonl" --books "$S/books-train.jsonl" \
    --config "$S/pairs-gravity/config.yaml" --out "$W/p-$1" "${@:2}"
  gravity export "$W/p-$1" --out "$W/data-$1" --test-size 0
}
for f in interests values personality culture; do pairs $f --facets $f; done
pairs contrast --rejected-strategy contrasting
pairs more --max-books 4

dpo() {  # name, data, train flags...
  gravity train dpo --data "$2" --out "$W/models/$1" --config "$W/train.yaml" "${@:3}"
}
dpo g-default "$S/data-gravity"
dpo g-ep3 "$S/data-gravity" --num-train-epochs 3
dpo g-beta05 "$S/data-gravity" --beta 0.5
dpo g-r32 "$S/data-gravity" --lora-r 32 --lora-alpha 64
dpo g-full "$S/data-gravity" --full --learning-rate 0.00001
dpo g-contrast "$W/data-contrast"
dpo g-more "$W/data-more"
for f in interests values personality culture; do dpo g-$f "$W/data-$f"; done

# Levers on the validation readers, against the default; the rule picks one or none.
levers=()
for v in g-ep3 g-beta05 g-r32 g-full g-contrast g-more; do levers+=(--extra-model "$W/models/$v"); done
gravity evaluate --profiles "$W/heldout-val.jsonl" --out "$W/eval-val" --config "$W/eval.yaml" \
  --focus g-default --extra-model "$W/models/g-default" "${levers[@]}"
chosen=$(python3 "$HERE/choose.py" "$W/eval-val/metrics.json" g-default | tail -n 1)

# The ablation on the test readers, and the chosen lever (if any) on them.
abl=()
for f in interests values personality culture; do abl+=(--extra-model "$W/models/g-$f"); done
gravity evaluate --profiles "$S/heldout.jsonl" --out "$W/eval-test" --config "$W/eval.yaml" \
  --gravity "$W/models/g-default" "${abl[@]}"
if [ "$chosen" != none ]; then
  gravity evaluate --profiles "$S/heldout.jsonl" --out "$W/eval-test-chosen" \
    --config "$W/eval.yaml" --gravity "$W/models/g-default" --extra-model "$W/models/$chosen"
fi
echo "chosen on the validation readers: $chosen"
