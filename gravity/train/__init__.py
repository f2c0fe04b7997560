"""Training: DPO on preference pairs (TRL ``DPOTrainer``) and the SFT baseline (``SFTTrainer``
on the prompts with their chosen responses). LoRA (peft) by default, full fine-tuning on request.

    gravity train dpo --data data/gravity-pairs --out runs/dpo
    gravity train sft --data data/gravity-pairs --out runs/sft --max-steps 20
    accelerate launch --num_processes 2 -m gravity train dpo --data ... --out ...

TRL always receives a saved model directory (the embedded model's converted checkpoint by
default): with an in-memory model it would rebuild the reference model from an empty name.

Reproducible and resumable: every random generator is seeded from ``seed`` before the model and
its LoRA layers are built; a fingerprint of (kind, config, training rows, base weights) is written
with the output (``fingerprint.json``) and into every checkpoint, so a rerun resumes only from
checkpoints of the same training and ``gravity run`` retrains only when the fingerprint changed.
"""

from gravity.train.config import TrainConfig
from gravity.train.fingerprint import (
    CHECKPOINTS,
    FINGERPRINT_NAME,
    fingerprint_changes,
    portable_model_name,
    read_fingerprint,
    train_fingerprint,
)
from gravity.train.trainer import train

__all__ = [
    "CHECKPOINTS",
    "FINGERPRINT_NAME",
    "TrainConfig",
    "fingerprint_changes",
    "portable_model_name",
    "read_fingerprint",
    "train",
    "train_fingerprint",
]
