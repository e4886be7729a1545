"""Single-device LoRA DPO with validation: cruijff_kit's torchtune preference-optimization recipe.

Run it either way (``key=value`` overrides work in both)::

    python -m cruijff_kit.tools.torchtune.custom_recipes.lora_dpo_single_device_val --config dpo.yaml
    tune run cruijff_kit/tools/torchtune/custom_recipes/lora_dpo_single_device_val.py --config dpo.yaml

(torchtune 0.6.1's ``tune run`` turns a custom recipe's path into a module name by replacing ``/`` with
``.``, so it needs the package-relative path above, from any directory; an absolute path fails with
"Relative module names not supported".)

The policy is the checkpointer's model plus trainable LoRA adapters; the reference is the same model
with the adapters switched off. Point ``checkpointer.checkpoint_dir`` at an SFT run's ``epoch_N/``
(a merged HF model) to run DPO from that SFT checkpoint: policy and reference then both start as the
SFT model (LoRA B matrices start at zero), and every saved ``epoch_N/`` of this run is
SFT weights + this run's LoRA delta.

Config keys: those of torchtune 0.6.1's ``lora_dpo_single_device`` plus the validation keys of
cruijff_kit's SFT recipe (``lora_finetune_single_device_val``, which this recipe extends and shares
model setup, resuming, checkpointing and the compute record with):

=================================  ===================================================================
key                                meaning
=================================  ===================================================================
model, tokenizer, checkpointer     as in the SFT recipe (LoRA model builder, HF checkpointer)
dataset / dataset_val              preference datasets, e.g.
                                   ``cruijff_kit.tools.torchtune.preference.preference_dataset``
                                   (items: chosen/rejected input ids and labels); ``dataset_val`` optional
loss                               ``torchtune.rlhf.loss.DPOLoss`` (``beta``, ``label_smoothing``) or
                                   ``torchtune.rlhf.loss.RSOLoss`` (``gamma``)
batch_size / batch_size_val        pairs per (validation) batch; each forward sees 2 x that many sequences
run_val_every_n_steps              validate every N optimizer steps (0 / null: only at epoch ends)
run_val_at_epoch_end               validate after every epoch (default true, needs ``dataset_val``)
run_val_at_start                   validate once before training, logged at step 0 (default false)
extra_metric_loggers               optional list of more metric loggers (e.g. WandBLogger) fed the
                                   same metrics as ``metric_logger``
seed, shuffle, epochs, max_steps_per_epoch, gradient_accumulation_steps, clip_grad_norm, optimizer,
lr_scheduler, device, dtype, compile, enable_activation_checkpointing, enable_activation_offloading,
log_every_n_steps, log_peak_memory_stats, metric_logger, output_dir, save_adapter_weights_only,
resume_from_checkpoint, profiler, low_cpu_ram, cudnn_deterministic_mode        as in the SFT recipe
=================================  ===================================================================

Outputs (``output_dir`` is the checkpointer's output_dir too):

* metric logger, every ``log_every_n_steps`` optimizer steps: ``loss``, ``lr``,
  ``tokens_per_second_per_gpu``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``,
  ``rewards/margins``, ``log_probs/chosen``, ``log_probs/rejected`` (means over the step's pairs; a
  reward is beta x (policy - reference) log-prob of a response; accuracy = share of pairs whose chosen
  reward exceeds the rejected one). Whenever validation runs, at the same step counter: ``val_loss``,
  ``val_rewards/chosen``, ``val_rewards/rejected``, ``val_rewards/accuracies``, ``val_rewards/margins``,
  ``val_policy_accuracy`` (share of pairs the policy itself gives the chosen response the higher
  log-prob; unlike reward accuracy this is meaningful before any training step too).
* ``epoch_{N}/`` after every epoch: merged model + adapter (only the adapter with
  ``save_adapter_weights_only: true``), saved without touching the live weights (the CPU-safe helper
  ``cruijff_kit.tools.torchtune.checkpoint.save_lora_checkpoint``).
* ``recipe_state/recipe_state.pt`` (what ``resume_from_checkpoint: true`` continues from) and
  ``training_summary.json`` after every epoch: the SFT recipe's fields plus ``objective: "dpo"``, the loss
  and its beta, ``reference_checkpoint_dir``, ``train_pairs`` / ``val_pairs``, first / final / best
  reward accuracy and margin, and validation reward accuracy (first / final / best).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import torch
from omegaconf import DictConfig
from torchtune import config, utils
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX
from torchtune.modules.peft import disable_adapter
from tqdm import tqdm

from cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val import (
    SUMMARY_FILE,
    LoRAFinetuneRecipeSingleDeviceVal,
)
from cruijff_kit.tools.torchtune.datasets import as_bool

log = utils.get_logger("INFO")

RECIPE_NAME = "cruijff_kit.lora_dpo_single_device_val"
DPO_COLLATE = "torchtune.data.padded_collate_dpo"


class LoRADPORecipeSingleDeviceVal(LoRAFinetuneRecipeSingleDeviceVal):
    """LoRA DPO on one device: policy = model + LoRA, reference = the same model with LoRA disabled."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self._reference_dir = str(cfg.checkpointer.get("checkpoint_dir", ""))
        self._stats.update({
            "first_reward_accuracy": None, "final_reward_accuracy": None, "best_reward_accuracy": None,
            "first_reward_margin": None, "final_reward_margin": None,
        })

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        resume_state = self._setup_policy(cfg)
        loss_cfg = cfg.get("loss", None) or {"_component_": "torchtune.rlhf.loss.DPOLoss"}
        self._loss_fn = config.instantiate(loss_cfg)
        self._ignore_index = CROSS_ENTROPY_IGNORE_IDX

        self._batch_size = int(cfg.batch_size)
        self._dataloader, self._sampler = self._setup_data(
            cfg.dataset, batch_size=self._batch_size, shuffle=as_bool(cfg.get("shuffle", True), "shuffle"),
            collate_fn=DPO_COLLATE, drop_last=True)
        self._check_preference_items(self._dataloader.dataset, "dataset")
        self._val_dataloader = None
        if cfg.get("dataset_val", None) is not None:
            self._val_dataloader, _ = self._setup_data(
                cfg.dataset_val, batch_size=int(cfg.get("batch_size_val", None) or self._batch_size),
                shuffle=False, collate_fn=DPO_COLLATE, drop_last=False)
            self._check_preference_items(self._val_dataloader.dataset, "dataset_val")
        elif self._run_val_every_n_steps or self._run_val_at_start:
            log.warning("run_val_every_n_steps / run_val_at_start are set but there is no dataset_val: "
                        "no validation will run")

        self._steps_per_epoch = len(self._dataloader) // self._gradient_accumulation_steps
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < self._steps_per_epoch:
            self._steps_per_epoch = int(self.max_steps_per_epoch)
        if self._steps_per_epoch < 1:
            raise ValueError(f"an epoch has no optimizer step: {len(self._dataloader.dataset)} pairs in "
                             f"batches of {self._batch_size} (drop_last) / gradient_accumulation_steps "
                             f"{self._gradient_accumulation_steps}; lower batch_size or add pairs")
        if resume_state:
            self._restore_recipe_state(resume_state)

        if cfg.get("lr_scheduler", None) is not None:
            self._lr_scheduler = config.instantiate(
                cfg.lr_scheduler, self._optimizer,
                num_training_steps=self.total_epochs * self._steps_per_epoch, last_epoch=self.global_step - 1)
        else:
            self._lr_scheduler = None
        self._finish_setup(cfg)

    @staticmethod
    def _check_preference_items(ds, key: str) -> None:
        if len(ds) == 0:
            raise ValueError(f"{key} is empty")
        item = ds[0]
        wanted = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")
        if not isinstance(item, dict) or any(k not in item for k in wanted):
            have = ", ".join(item) if isinstance(item, dict) else type(item).__name__
            raise ValueError(f"{key} does not yield preference pairs (needs {', '.join(wanted)}; got {have}); "
                             "use cruijff_kit.tools.torchtune.preference.preference_dataset")

    def _static_facts(self, cfg: DictConfig) -> dict[str, Any]:
        facts = super()._static_facts(cfg)
        loss = self._loss_fn
        facts.update({
            "recipe": RECIPE_NAME,
            "objective": "dpo",
            "loss": f"{type(loss).__module__}.{type(loss).__name__}",
            "beta": getattr(loss, "beta", getattr(loss, "gamma", None)),
            "label_smoothing": getattr(loss, "label_smoothing", None),
            "reference_checkpoint_dir": self._reference_dir,
            "train_pairs": facts["train_examples"],
            "val_pairs": facts["val_examples"],
        })
        return facts

    # ------------------------------------------------------------------ steps
    def _logps(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed response log-probs of the chosen (first half) and rejected (second half) sequences.

        Same value as ``torchtune.rlhf.get_batch_log_probs`` (next-token log-prob of every labelled
        token, summed per sequence), but the log-softmax runs over the labelled positions only: the
        response is a few tokens of a long sequence, and a full ``(batch, seq, vocab)`` log-softmax
        dominates time and memory for large vocabularies.
        """
        with self._act_ctx:
            logits = self._model(input_ids)
        targets = labels[:, 1:]
        keep = targets != self._ignore_index
        rows = keep.nonzero(as_tuple=True)
        picked = logits[:, :-1][rows].float().log_softmax(-1)
        token_logps = picked.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)
        del logits, picked
        logps = torch.zeros(input_ids.shape[0], device=token_logps.device, dtype=token_logps.dtype)
        logps = logps.index_add(0, rows[0], token_logps)
        half = input_ids.shape[0] // 2
        return logps[:half], logps[half:]

    def _pair_step(self, input_ids: torch.Tensor, labels: torch.Tensor):
        """(per-pair losses, chosen rewards, rejected rewards, policy chosen / rejected log-probs)."""
        policy_c, policy_r = self._logps(input_ids, labels)
        with torch.no_grad(), disable_adapter(self._model):
            ref_c, ref_r = self._logps(input_ids, labels)
        losses, chosen_r, rejected_r = self._loss_fn(policy_c, policy_r, ref_c, ref_r)
        return losses, chosen_r, rejected_r, policy_c, policy_r

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Means over the whole validation set (one host sync at the end)."""
        t0 = time.perf_counter()
        self._model.eval()
        sums = torch.zeros(6, device=self._device, dtype=torch.float32)
        n_pairs = 0
        for input_ids, labels in self._val_dataloader:
            input_ids, labels = input_ids.to(self._device), labels.to(self._device)
            losses, cr, rr, pc, pr = self._pair_step(input_ids, labels)
            sums += torch.stack([losses.sum(), cr.sum(), rr.sum(), (cr > rr).float().sum(),
                                 (cr - rr).sum(), (pc > pr).float().sum()]).float()
            n_pairs += losses.shape[0]
        self._model.train()
        vals = (sums / max(n_pairs, 1)).tolist() if n_pairs else [float("nan")] * 6
        self._stats["val_s"] += time.perf_counter() - t0
        keys = ("val_loss", "val_rewards/chosen", "val_rewards/rejected", "val_rewards/accuracies",
                "val_rewards/margins", "val_policy_accuracy")
        return dict(zip(keys, vals))

    def _validation_metrics(self) -> tuple[dict[str, float], dict[str, float]]:
        metrics = self.validate()
        return metrics, {"val_loss": metrics["val_loss"], "reward_accuracy": metrics["val_rewards/accuracies"],
                         "reward_margin": metrics["val_rewards/margins"],
                         "policy_accuracy": metrics["val_policy_accuracy"]}

    def train(self) -> None:
        if not self._begin_training():
            return

        stats = self._stats
        ignore, pad_id = self._ignore_index, self._tokenizer.pad_id
        gas = self._gradient_accumulation_steps
        dev = self._device
        self._model.train()
        with self._profiler as prof:
            for epoch in range(self.epochs_run, self.total_epochs):
                self._sampler.set_epoch(epoch)
                pbar = tqdm(total=self._steps_per_epoch, desc=f"epoch {epoch}", file=sys.stderr)
                # [loss, chosen reward, rejected reward, correct, margin, logp chosen, logp rejected] sums
                step_sums = torch.zeros(7, device=dev, dtype=torch.float32)
                epoch_sums = torch.zeros(7, device=dev, dtype=torch.float32)
                step_pairs = epoch_pairs = 0
                log_trained, log_t0 = 0, time.perf_counter()
                t_loop = time.perf_counter()
                val_s_before = stats["val_s"]
                steps_this_epoch = 0
                for idx, (input_ids, labels) in enumerate(self._dataloader):
                    n_pairs = input_ids.shape[0] // 2
                    n_trained = int((labels != ignore).sum())
                    stats["tokens"] += int((input_ids != pad_id).sum())
                    stats["padded_tokens"] += input_ids.numel()
                    stats["trained_tokens"] += n_trained
                    stats["samples"] += n_pairs
                    log_trained += n_trained
                    input_ids, labels = input_ids.to(dev), labels.to(dev)
                    losses, cr, rr, pc, pr = self._pair_step(input_ids, labels)
                    (losses.mean() / gas).backward()
                    step_sums += torch.stack([losses.detach().sum(), cr.sum(), rr.sum(), (cr > rr).float().sum(),
                                              (cr - rr).sum(), pc.detach().sum(), pr.detach().sum()]).float()
                    step_pairs += n_pairs

                    if (idx + 1) % gas == 0:
                        grad_norm = None
                        if self._clip_grad_norm is not None:
                            grad_norm = torch.nn.utils.clip_grad_norm_(
                                self._model.parameters(), max_norm=float(self._clip_grad_norm))
                        self._optimizer.step()
                        self._optimizer.zero_grad(set_to_none=True)
                        if self._lr_scheduler is not None:
                            self._lr_scheduler.step()
                        self.global_step += 1
                        steps_this_epoch += 1
                        epoch_sums += step_sums
                        epoch_pairs += step_pairs
                        last_step = steps_this_epoch == self._steps_per_epoch
                        if self.global_step % self._log_every_n_steps == 0 or last_step:
                            means = (step_sums / max(step_pairs, 1)).tolist()
                            self._log_dpo_step(means, log_trained, time.perf_counter() - log_t0, grad_norm)
                            pbar.set_description(f"epoch {epoch}|step {self.global_step}|loss {means[0]:.4f}"
                                                 f"|acc {means[3]:.2f}")
                            log_trained, log_t0 = 0, time.perf_counter()
                        pbar.update(1)
                        step_sums = torch.zeros(7, device=dev, dtype=torch.float32)
                        step_pairs = 0
                        if self._run_val_every_n_steps and self.global_step % self._run_val_every_n_steps == 0:
                            self._run_validation(epoch)
                            log_t0 = time.perf_counter()
                        if last_step:
                            prof.step()
                            break
                    prof.step()
                pbar.close()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                stats["train_s"] += time.perf_counter() - t_loop - (stats["val_s"] - val_s_before)
                if self._run_val_at_epoch_end:
                    self._run_validation(epoch, at_epoch_end=True)
                self.epochs_run = epoch + 1
                em = (epoch_sums / max(epoch_pairs, 1)).tolist()
                last_val = stats["val"][-1] if stats["val"] and stats["val"][-1]["step"] == self.global_step else None
                stats["epochs"].append({
                    "epoch": epoch, "step": self.global_step, "pairs": epoch_pairs,
                    "train_loss_mean": em[0], "reward_accuracy_mean": em[3], "reward_margin_mean": em[4],
                    "val_loss": last_val["val_loss"] if last_val else None,
                    "val_reward_accuracy": last_val["reward_accuracy"] if last_val else None,
                })
                self.save_checkpoint(epoch)
                self._write_summary()

    def _log_dpo_step(self, means: list[float], trained: int, seconds: float, grad_norm) -> None:
        loss, chosen, rejected, acc, margin, logp_c, logp_r = means
        s = self._stats
        if s["first_train_loss"] is None:
            s["first_train_loss"], s["first_reward_accuracy"], s["first_reward_margin"] = loss, acc, margin
        s["final_train_loss"], s["final_reward_accuracy"], s["final_reward_margin"] = loss, acc, margin
        if s["best_train_loss"] is None or loss < s["best_train_loss"]:
            s["best_train_loss"] = loss
        if s["best_reward_accuracy"] is None or acc > s["best_reward_accuracy"]:
            s["best_reward_accuracy"] = acc
        self._log_step({
            "loss": loss,
            "lr": float(self._optimizer.param_groups[0]["lr"]),
            "tokens_per_second_per_gpu": trained / seconds if seconds > 0 else 0.0,
            "rewards/chosen": chosen,
            "rewards/rejected": rejected,
            "rewards/accuracies": acc,
            "rewards/margins": margin,
            "log_probs/chosen": logp_c,
            "log_probs/rejected": logp_r,
        }, grad_norm)

    # ------------------------------------------------------------------ outputs
    def _write_summary(self) -> None:
        """The SFT recipe's training_summary.json plus the DPO fields."""
        super()._write_summary()
        path = self._output_dir / SUMMARY_FILE
        summary = json.loads(path.read_text())
        s = self._stats
        val = [v for v in s["val"] if not math.isnan(v.get("reward_accuracy", float("nan")))]
        best_val = max(val, key=lambda v: v["reward_accuracy"]) if val else None
        final_epoch = s["epochs"][-1] if s["epochs"] else {}
        summary.update({
            "objective": "dpo",
            "loss": s.get("loss"),
            "beta": s.get("beta"),
            "label_smoothing": s.get("label_smoothing"),
            "reference_checkpoint_dir": s.get("reference_checkpoint_dir"),
            "train_pairs": s.get("train_pairs"),
            "val_pairs": s.get("val_pairs"),
            "first_reward_accuracy": s["first_reward_accuracy"],
            "final_reward_accuracy": s["final_reward_accuracy"],
            "best_reward_accuracy": s["best_reward_accuracy"],
            "first_reward_margin": s["first_reward_margin"],
            "final_reward_margin": s["final_reward_margin"],
            "final_epoch_reward_accuracy": final_epoch.get("reward_accuracy_mean"),
            "final_epoch_reward_margin": final_epoch.get("reward_margin_mean"),
            "first_val_reward_accuracy": val[0]["reward_accuracy"] if val else None,
            "final_val_reward_accuracy": val[-1]["reward_accuracy"] if val else None,
            "best_val_reward_accuracy": best_val["reward_accuracy"] if best_val else None,
            "best_val_reward_accuracy_step": best_val["step"] if best_val else None,
            "first_val_policy_accuracy": val[0]["policy_accuracy"] if val else None,
            "final_val_policy_accuracy": val[-1]["policy_accuracy"] if val else None,
        })
        tmp = path.with_name(f".{path.name}.dpo.tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, path)


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Single-device LoRA DPO with validation (cruijff_kit). Config: --config FILE [key=value ...]."""
    LoRADPORecipeSingleDeviceVal.main(cfg)


if __name__ == "__main__":
    sys.exit(recipe_main())
