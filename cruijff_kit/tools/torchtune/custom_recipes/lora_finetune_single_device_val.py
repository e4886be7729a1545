"""Single-device LoRA fine-tuning with validation loss: cruijff_kit's torchtune recipe.

Run it either way (``key=value`` overrides work in both), from any directory::

    python -m cruijff_kit.tools.torchtune.custom_recipes.lora_finetune_single_device_val --config finetune.yaml
    tune run cruijff_kit/tools/torchtune/custom_recipes/lora_finetune_single_device_val.py --config finetune.yaml

(torchtune 0.6.1's ``tune run`` turns a custom recipe's path into a module name by replacing ``/`` with
``.``, so it must be this relative path, which names the installed module; an absolute path becomes
``.work.…`` and fails with "Relative module names not supported".)

It reads the config keys of torchtune 0.6.1's ``lora_finetune_single_device`` and adds validation:

=================================  ===================================================================
key                                meaning
=================================  ===================================================================
model                              a LoRA model builder (``lora_rank``, ``lora_alpha``,
                                   ``lora_attn_modules``, ``apply_lora_to_mlp``, ``apply_lora_to_output``)
tokenizer, checkpointer            torchtune components (checkpointer: an HF/Meta/torchtune checkpointer)
dataset                            training dataset component (or a list of them)
dataset_val                        validation dataset component (optional; no validation without it)
batch_size / batch_size_val        training / validation batch size (``batch_size_val`` defaults to
                                   ``batch_size``)
run_val_every_n_steps              validate every N optimizer steps (0 / null: only at epoch ends)
run_val_at_epoch_end               validate after every epoch (default true, needs ``dataset_val``)
run_val_at_start                   validate once before training, logged at step 0 (default false)
seed, shuffle, epochs, max_steps_per_epoch, gradient_accumulation_steps, clip_grad_norm,
optimizer, lr_scheduler, loss, device, dtype, compile, enable_activation_checkpointing,
enable_activation_offloading, log_every_n_steps, log_peak_memory_stats, metric_logger, output_dir,
save_adapter_weights_only, resume_from_checkpoint, collate_fn, profiler, low_cpu_ram,
cudnn_deterministic_mode            as in torchtune's recipe
=================================  ===================================================================

Outputs (``output_dir`` is the checkpointer's output_dir too):

* metric logger: ``loss``, ``lr``, ``tokens_per_second_per_gpu`` (and ``grad_norm`` / memory stats when
  configured) every ``log_every_n_steps`` optimizer steps, ``val_loss`` at the same step counter whenever
  validation runs. With ``DiskLogger`` each line reads ``Step <n> | key:value key:value ``.
* ``epoch_{N}/`` (N from 0) after every epoch: the merged model (``model.safetensors`` + ``config.json`` and
  the base dir's tokenizer files, loadable by transformers on its own) and the adapter
  (``adapter_model.safetensors`` + ``adapter_config.json`` in PEFT format, ``adapter_model.pt`` for
  torchtune); only the adapter with ``save_adapter_weights_only: true``.
* ``recipe_state/recipe_state.pt`` after every epoch: what ``resume_from_checkpoint: true`` continues from
  (the next epoch after the last saved one; a no-op when the run is complete).
* ``training_summary.json`` after every epoch: tokens, times, throughput, peak memory, losses.

Validation runs only every N steps (and at epoch ends); a training step does no more host/device syncs than
torchtune's recipe (one ``.item()`` per logged step). With ``CEWithChunkedOutputLoss`` (and no ``compile``)
only the positions that carry a label go through the output layer (``tools/torchtune/label_logits.py``): the
same loss and gradients as torchtune's, without projecting masked prompt and padding tokens onto the
vocabulary (an output-only tiny sanity-check run: validation 45.5 s -> 9.6 s, training 64.8 s -> 13.1 s).
"""
from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader, DistributedSampler
from torchtune import config, modules, training, utils
from torchtune.config._utils import _get_component_from_path
from torchtune.data import padded_collate_packed
from torchtune.datasets import ConcatDataset, PackedDataset
from torchtune.modules.peft import (
    get_adapter_params,
    set_trainable_params,
    validate_missing_and_unexpected_for_lora,
)
from tqdm import tqdm

from cruijff_kit.experiment import layout
from cruijff_kit.tools.torchtune import label_logits
from cruijff_kit.tools.torchtune.checkpoint import RECIPE_STATE_FILE, save_lora_checkpoint
from cruijff_kit.tools.torchtune.datasets import as_bool

log = utils.get_logger("INFO")

RECIPE_NAME = "cruijff_kit.lora_finetune_single_device_val"
SUMMARY_FILE = layout.TRAINING_SUMMARY
GLOBAL_STEP_KEY = "global_step"
STATS_KEY = "cruijff_stats"


def _peak_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


class MetricLoggers:
    """Fan one metric stream out to the main logger and any extra ones (e.g. W&B next to DiskLogger)."""

    def __init__(self, loggers: list) -> None:
        self._loggers = loggers

    def log_config(self, cfg) -> None:
        for lg in self._loggers:
            if hasattr(lg, "log_config"):
                lg.log_config(cfg)

    def log_dict(self, payload, step: int) -> None:
        for lg in self._loggers:
            lg.log_dict(payload, step=step)

    def log(self, name, data, step: int) -> None:
        for lg in self._loggers:
            lg.log(name, data, step=step)

    def close(self) -> None:
        for lg in self._loggers:
            lg.close()


class LoRAFinetuneRecipeSingleDeviceVal:
    """LoRA fine-tuning on one device with periodic validation, per-epoch checkpoints and a compute record."""

    def __init__(self, cfg: DictConfig) -> None:
        self._t_start = time.perf_counter()
        self._device = utils.get_device(device=cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        if self._dtype == torch.float16:
            raise ValueError("fp16 is not supported by this recipe; use fp32 or bf16")
        self._output_dir = Path(cfg.output_dir)
        self._ckpt_output_dir = Path(cfg.checkpointer.get("output_dir", cfg.output_dir))
        self._log_every_n_steps = int(cfg.get("log_every_n_steps", 1) or 1)
        self._log_peak_memory_stats = as_bool(cfg.get("log_peak_memory_stats", False), "log_peak_memory_stats")
        if self._device.type == "cpu":
            self._log_peak_memory_stats = False
        self.seed = training.set_seed(seed=cfg.seed, debug_mode=cfg.get("cudnn_deterministic_mode", None))
        self.total_epochs = int(cfg.epochs)
        self.max_steps_per_epoch = cfg.get("max_steps_per_epoch", None)
        self._gradient_accumulation_steps = int(cfg.get("gradient_accumulation_steps", 1) or 1)
        self._clip_grad_norm = cfg.get("clip_grad_norm", None)
        self._resume = as_bool(cfg.get("resume_from_checkpoint", False), "resume_from_checkpoint")
        self._adapter_only = as_bool(cfg.get("save_adapter_weights_only", False), "save_adapter_weights_only")
        self._ac = as_bool(cfg.get("enable_activation_checkpointing", False), "enable_activation_checkpointing")
        self._offload = as_bool(cfg.get("enable_activation_offloading", False), "enable_activation_offloading")
        if self._offload and (self._device.type != "cuda" or not self._ac):
            raise RuntimeError("enable_activation_offloading needs device cuda and enable_activation_checkpointing")
        self._compile = as_bool(cfg.get("compile", False), "compile")
        self._run_val_every_n_steps = int(cfg.get("run_val_every_n_steps", 0) or 0)
        self._run_val_at_epoch_end = as_bool(cfg.get("run_val_at_epoch_end", True), "run_val_at_epoch_end")
        self._run_val_at_start = as_bool(cfg.get("run_val_at_start", False), "run_val_at_start")

        self.epochs_run = 0
        self.global_step = 0
        # Compute record; restored and continued on resume.
        self._stats: dict[str, Any] = {
            "tokens": 0, "trained_tokens": 0, "padded_tokens": 0, "samples": 0,
            "train_s": 0.0, "val_s": 0.0, "checkpoint_s": 0.0, "setup_s": 0.0, "wall_s": 0.0,
            "jobs": 0, "first_train_loss": None, "final_train_loss": None, "best_train_loss": None,
            "val": [], "epochs": [], "peak_rss_bytes": 0, "gpu_peak_alloc_bytes": 0,
            "gpu_peak_reserved_bytes": 0,
        }

    # ------------------------------------------------------------------ setup
    def _setup_metric_loggers(self, cfg: DictConfig) -> None:
        """`metric_logger` (DiskLogger) plus any `extra_metric_loggers` (e.g. W&B), fed the same metrics."""
        loggers = [config.instantiate(cfg.metric_logger)]
        for extra in cfg.get("extra_metric_loggers", None) or []:
            loggers.append(config.instantiate(extra))
        self._metric_logger = MetricLoggers(loggers)
        self._metric_logger.log_config(cfg)

    def _setup_policy(self, cfg: DictConfig) -> dict[str, Any] | None:
        """Metric loggers, checkpointer, model (+ the saved adapter on resume), tokenizer and optimizer (+ its
        saved state): the setup both recipes share. Returns the resume state (None on a fresh start)."""
        self._setup_metric_loggers(cfg)

        resume_state = self._load_resume_state(cfg) if self._resume else None
        self._checkpointer = config.instantiate(self._checkpointer_cfg(cfg.checkpointer))
        base_sd = self._checkpointer.load_checkpoint()[training.MODEL_KEY]

        if as_bool(cfg.get("low_cpu_ram", False), "low_cpu_ram"):
            import torchtune.modules.common_utils as common_utils

            common_utils._use_low_cpu_ram = True

        self._model = self._setup_model(cfg.model, base_sd,
                                        resume_state["adapter"] if resume_state else None)
        del base_sd
        self._tokenizer = config.instantiate(cfg.tokenizer)

        self._optimizer = config.instantiate(cfg.optimizer, self._model.parameters())
        if resume_state:
            self._optimizer.load_state_dict(resume_state[training.OPT_KEY])
        return resume_state

    def _finish_setup(self, cfg: DictConfig) -> None:
        """Profiler, setup time and the static facts of the compute record (last step of setup)."""
        self._profiler = self._setup_profiler(cfg.get("profiler", None))
        self._stats["setup_s"] += time.perf_counter() - self._t_start
        self._stats["jobs"] += 1
        self._stats.update(self._static_facts(cfg))

    def setup(self, cfg: DictConfig) -> None:
        resume_state = self._setup_policy(cfg)
        self._loss_fn = config.instantiate(cfg.loss)
        if self._compile:
            self._loss_fn = training.compile_loss(self._loss_fn)
        if label_logits.is_chunked_cross_entropy(self._loss_fn):
            self._model.set_num_output_chunks(self._loss_fn.num_output_chunks)
        self._ignore_index = self._loss_fn.ignore_index
        # logits only at label positions (label_logits.py): same loss, far less work for output-only training
        self._label_logits = label_logits.supports(self._model, self._loss_fn, self._compile)

        collate_fn = cfg.get("collate_fn", "torchtune.data.padded_collate_sft")
        if "left_pad_sequence" in collate_fn:
            raise RuntimeError("left_pad_sequence is an inference collator")
        self._batch_size = int(cfg.batch_size)
        self._dataloader, self._sampler = self._setup_data(
            cfg.dataset, batch_size=self._batch_size, shuffle=as_bool(cfg.get("shuffle", True), "shuffle"),
            collate_fn=collate_fn, drop_last=True)
        self._val_dataloader = None
        cfg_val = cfg.get("dataset_val", None)
        if isinstance(cfg_val, DictConfig) and not cfg_val.get("_component_", None):
            cfg_val = None  # `dataset_val=null` on the command line leaves an empty node
        if cfg_val is not None:
            self._val_dataloader, _ = self._setup_data(
                cfg_val, batch_size=int(cfg.get("batch_size_val", None) or self._batch_size),
                shuffle=False, collate_fn=collate_fn, drop_last=False)
        elif self._run_val_every_n_steps or self._run_val_at_start:
            log.warning("run_val_every_n_steps / run_val_at_start are set but there is no dataset_val: "
                        "no validation will run")

        self._steps_per_epoch = self._compute_steps_per_epoch()
        if resume_state:
            self._restore_recipe_state(resume_state)

        self._lr_scheduler = config.instantiate(
            cfg.lr_scheduler, self._optimizer,
            num_training_steps=self.total_epochs * self._steps_per_epoch,
            last_epoch=self.global_step - 1,
        )
        self._finish_setup(cfg)

    def _compute_steps_per_epoch(self) -> int:
        steps = len(self._dataloader) // self._gradient_accumulation_steps
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < steps:
            steps = int(self.max_steps_per_epoch)
        if steps < 1:
            raise ValueError(f"an epoch has no optimizer step: {len(self._dataloader)} batches of "
                             f"{self._batch_size} (drop_last) / gradient_accumulation_steps "
                             f"{self._gradient_accumulation_steps}")
        return steps

    @staticmethod
    def _checkpointer_cfg(cfg_ckpt: DictConfig) -> DictConfig:
        """The checkpointer config with the resume keys removed: this recipe loads adapter + state itself."""
        d = OmegaConf.to_container(cfg_ckpt, resolve=True)
        for key in ("adapter_checkpoint", "recipe_checkpoint", "resume_from_checkpoint",
                    "should_load_recipe_state"):
            d.pop(key, None)
        return OmegaConf.create(d)

    def _load_resume_state(self, cfg: DictConfig) -> dict[str, Any] | None:
        """Recipe state + adapter of the last saved epoch; None (fresh start) when nothing was saved yet."""
        rel = cfg.checkpointer.get("recipe_checkpoint", None)
        state_path = self._ckpt_output_dir / (rel or RECIPE_STATE_FILE)
        if not state_path.exists():
            log.warning(f"resume_from_checkpoint: no recipe state at {state_path}; starting from scratch")
            return None
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        epochs_run = int(state[training.EPOCHS_KEY])
        rel_adapter = cfg.checkpointer.get("adapter_checkpoint", None)
        adapter_path = self._ckpt_output_dir / (rel_adapter or f"{layout.epoch_dirname(epochs_run - 1)}/adapter_model.pt")
        if not adapter_path.exists():
            raise FileNotFoundError(f"resume_from_checkpoint: {state_path} says {epochs_run} epoch(s) ran, "
                                    f"but the adapter {adapter_path} is missing")
        state["adapter"] = torch.load(adapter_path, map_location="cpu", weights_only=True)
        log.info(f"Resuming after epoch {epochs_run - 1} from {adapter_path}")
        return state

    def _restore_recipe_state(self, state: dict[str, Any]) -> None:
        """Epochs run, seed, max_steps_per_epoch and the running stats of the interrupted run.

        Called once the dataloaders and steps_per_epoch are set up; sets global_step."""
        self.epochs_run = int(state[training.EPOCHS_KEY])
        if self.seed != state[training.SEED_KEY]:
            log.warning(f"seed {self.seed} differs from the checkpoint's; using {state[training.SEED_KEY]}")
            self.seed = state[training.SEED_KEY]
            self._sampler.seed = self.seed  # the data order of the interrupted run
        if self.max_steps_per_epoch != state[training.MAX_STEPS_KEY]:
            log.warning("max_steps_per_epoch differs from the checkpoint's; using the checkpoint's")
            self.max_steps_per_epoch = state[training.MAX_STEPS_KEY]
            self._steps_per_epoch = self._compute_steps_per_epoch()
        if self.total_epochs != state[training.TOTAL_EPOCHS_KEY]:
            log.warning(f"epochs is {self.total_epochs}, the checkpoint was for "
                        f"{state[training.TOTAL_EPOCHS_KEY]}; using {self.total_epochs}")
        self.global_step = int(state.get(GLOBAL_STEP_KEY, self.epochs_run * self._steps_per_epoch))
        saved = state.get(STATS_KEY)
        if isinstance(saved, dict):
            self._stats.update(saved)
            self._stats["wall_s_before_job"] = float(saved.get("wall_s", 0.0))
        self._stats["resumed_from_epoch"] = self.epochs_run - 1

    def _setup_model(self, cfg_model: DictConfig, base_sd: dict, adapter_sd: dict | None) -> torch.nn.Module:
        with training.set_default_dtype(self._dtype), self._device:
            model = config.instantiate(cfg_model)
        self._lora_rank = int(cfg_model.lora_rank)
        self._lora_alpha = float(cfg_model.lora_alpha)
        self._lora_attn_modules = list(cfg_model.lora_attn_modules)
        self._apply_lora_to_mlp = bool(cfg_model.get("apply_lora_to_mlp", False))
        self._apply_lora_to_output = bool(cfg_model.get("apply_lora_to_output", False))
        adapter_params = get_adapter_params(model)
        set_trainable_params(model, adapter_params)
        if self._compile:
            training.compile_model(model)
        if self._ac:
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})

        base_missing, base_unexpected = model.load_state_dict(base_sd, strict=False)
        if any("magnitude" in k for k in adapter_params):  # DoRA: magnitudes start from the base weights
            for m in model.modules():
                if hasattr(m, "initialize_dora_magnitude"):
                    m.initialize_dora_magnitude()
        lora_missing = lora_unexpected = None
        if adapter_sd is not None:
            lora_missing, lora_unexpected = model.load_state_dict(adapter_sd, strict=False)
        validate_missing_and_unexpected_for_lora(
            lora_attn_modules=self._lora_attn_modules, apply_lora_to_mlp=self._apply_lora_to_mlp,
            apply_lora_to_output=self._apply_lora_to_output, base_missing=base_missing,
            base_unexpected=base_unexpected, lora_missing=lora_missing, lora_unexpected=lora_unexpected)
        training.validate_expected_param_dtype(adapter_params.items(), dtype=self._dtype)
        self._act_ctx = training.get_act_offloading_ctx_manager(model, self._offload)
        self._n_params = sum(p.numel() for p in model.parameters())
        self._n_trainable = sum(p.numel() for p in adapter_params.values())
        log.info(f"Model ready ({self._n_params:,} parameters, {self._n_trainable:,} trainable, {self._dtype})")
        return model

    def _setup_data(self, cfg_dataset, *, batch_size: int, shuffle: bool, collate_fn: str,
                    drop_last: bool) -> tuple[DataLoader, DistributedSampler]:
        if isinstance(cfg_dataset, ListConfig):
            ds = ConcatDataset(datasets=[config.instantiate(c, self._tokenizer) for c in cfg_dataset])
            packed = getattr(ds, "packed", False)
        else:
            ds = config.instantiate(cfg_dataset, self._tokenizer)
            packed = isinstance(ds, PackedDataset)
        # Reshuffled per epoch by set_epoch: permutation seeded by seed + epoch, so a resumed run sees
        # the same order as an uninterrupted one.
        sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=shuffle, seed=self.seed)
        collate = (padded_collate_packed if packed else
                   partial(_get_component_from_path(collate_fn), padding_idx=self._tokenizer.pad_id,
                           ignore_idx=self._ignore_index))
        loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=drop_last)
        return loader, sampler

    def _setup_profiler(self, cfg_profiler):
        if cfg_profiler is None or not as_bool(cfg_profiler.get("enabled", False), "profiler.enabled"):
            return training.DummyProfiler()
        cfg_profiler = OmegaConf.create(OmegaConf.to_container(cfg_profiler, resolve=True))
        cfg_profiler.setdefault("_component_", "torchtune.training.setup_torch_profiler")
        profiler, _ = config.instantiate(cfg_profiler)
        return profiler

    def _static_facts(self, cfg: DictConfig) -> dict[str, Any]:
        return {
            "recipe": RECIPE_NAME, "device": self._device.type, "dtype": str(self._dtype).replace("torch.", ""),
            "model_params": self._n_params, "trainable_params": self._n_trainable,
            "batch_size": self._batch_size, "gradient_accumulation_steps": self._gradient_accumulation_steps,
            "max_seq_len": getattr(self._tokenizer, "max_seq_len", None), "total_epochs": self.total_epochs,
            "steps_per_epoch": self._steps_per_epoch, "train_examples": len(self._dataloader.dataset),
            "val_examples": len(self._val_dataloader.dataset) if self._val_dataloader is not None else 0,
            "lora_rank": self._lora_rank, "lora_alpha": self._lora_alpha,
        }

    # ------------------------------------------------------------------ steps
    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross entropy over the unmasked label tokens of a batch already on the device."""
        labels = batch.pop("labels")
        # Next-token targets: shift left by one and pad the end with ignore_index (no logits slicing).
        labels = F.pad(labels[..., 1:], (0, 1), value=self._ignore_index)
        if self._label_logits:
            with self._act_ctx:
                return label_logits.label_cross_entropy(self._model, batch, labels, self._ignore_index,
                                                        self._loss_fn.num_output_chunks)
        with self._act_ctx:
            logits = self._model(**batch)
        if not isinstance(logits, list):
            labels = labels.reshape(-1)
            logits = logits.reshape(-1, logits.size(-1))
        loss = self._loss_fn(logits, labels)
        del logits
        return loss

    @torch.no_grad()
    def validate(self) -> float:
        """Token-weighted mean loss over the whole validation set (one host sync at the end)."""
        t0 = time.perf_counter()
        self._model.eval()
        total = torch.zeros((), device=self._device, dtype=torch.float32)
        n_tokens = 0
        for batch in self._val_dataloader:
            n = int((batch["labels"] != self._ignore_index).sum())
            if n == 0:
                continue
            utils.batch_to_device(batch, self._device)
            total += self._loss(batch).float() * n
            n_tokens += n
        self._model.train()
        value = total.item() / n_tokens if n_tokens else float("nan")
        self._stats["val_s"] += time.perf_counter() - t0
        return value

    def _run_validation(self, epoch: int, at_epoch_end: bool = False) -> None:
        if self._val_dataloader is None:
            return
        last = self._stats["val"][-1] if self._stats["val"] else None
        if last is not None and last["step"] == self.global_step:  # already validated at this step
            if at_epoch_end:
                last["epoch_end"] = True
            return
        metrics, record = self._validation_metrics()
        self._metric_logger.log_dict(metrics, step=self.global_step)
        self._stats["val"].append({"step": self.global_step, "epoch": epoch, "epoch_end": at_epoch_end, **record})
        log.info(f"step {self.global_step} (epoch {epoch}): "
                 + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))

    def _validation_metrics(self) -> tuple[dict[str, float], dict[str, float]]:
        """One validation pass: (metrics for the loggers, the record kept in training_summary.json)."""
        val_loss = self.validate()
        return {"val_loss": val_loss}, {"val_loss": val_loss}

    def _begin_training(self) -> bool:
        """False when a resumed run has nothing left to train; else the step-0 validation baseline."""
        if self.epochs_run >= self.total_epochs:
            log.info(f"All {self.total_epochs} epoch(s) already done (resumed a complete run); nothing to train")
            self._write_summary()
            return False
        if self._compile:
            log.info("torch.compile is on: the first step compiles the model (slow)")
        if self._run_val_at_start and self.global_step == 0:
            self._run_validation(epoch=0)
        return True

    def train(self) -> None:
        if not self._begin_training():
            return
        self._trainable = [p for p in self._model.parameters() if p.requires_grad]
        self._model.train()
        with self._profiler as prof:
            for epoch in range(self.epochs_run, self.total_epochs):
                t0, val_s0 = time.perf_counter(), self._stats["val_s"]
                epoch_loss, epoch_trained = self._train_epoch(epoch, prof)
                if self._device.type == "cuda":
                    torch.cuda.synchronize(self._device)
                self._stats["train_s"] += time.perf_counter() - t0 - (self._stats["val_s"] - val_s0)
                if self._run_val_at_epoch_end:
                    self._run_validation(epoch, at_epoch_end=True)
                self.epochs_run = epoch + 1
                last_val = self._stats["val"][-1] if self._stats["val"] else None
                self._stats["epochs"].append({
                    "epoch": epoch, "step": self.global_step,
                    "train_loss_mean": epoch_loss / max(epoch_trained, 1),
                    "val_loss": last_val["val_loss"] if last_val and last_val["step"] == self.global_step else None,
                })
                self.save_checkpoint(epoch)
                self._write_summary()

    def _train_epoch(self, epoch: int, prof) -> tuple[float, int]:
        """One epoch of optimizer steps; returns (sum of token losses, trained tokens) for the epoch mean."""
        stats, ignore, pad_id = self._stats, self._ignore_index, self._tokenizer.pad_id
        gas = self._gradient_accumulation_steps
        self._sampler.set_epoch(epoch)
        pbar = tqdm(total=self._steps_per_epoch, desc=f"epoch {epoch}", file=sys.stderr)
        epoch_loss = torch.zeros((), device=self._device, dtype=torch.float32)
        running_loss = torch.zeros((), device=self._device, dtype=torch.float32)
        epoch_trained = step_trained = log_trained = 0  # unmasked label tokens
        steps = 0
        log_t0 = time.perf_counter()
        for idx, batch in enumerate(self._dataloader):
            # Token counts on the host, before the batch moves to the device: no sync.
            labels = batch["labels"]
            n_trained = int((labels != ignore).sum())
            stats["tokens"] += int((batch["tokens"] != pad_id).sum())
            stats["padded_tokens"] += batch["tokens"].numel()
            stats["samples"] += labels.shape[0]
            step_trained += n_trained
            utils.batch_to_device(batch, self._device)
            # Mean loss times its token count; the step divides by all of its tokens (grad accumulation).
            loss = self._loss(batch) * n_trained
            running_loss += loss.detach().float()
            loss.backward()
            if (idx + 1) % gas:
                prof.step()
                continue

            grad_norm = self._optimizer_step(step_trained)
            steps += 1
            epoch_loss += running_loss
            epoch_trained += step_trained
            log_trained += step_trained
            stats["trained_tokens"] += step_trained
            last_step = steps == self._steps_per_epoch
            if self.global_step % self._log_every_n_steps == 0 or last_step:
                step_loss = running_loss.item() / max(step_trained, 1)  # the step's only host sync
                self._log_train_step(step_loss, log_trained, time.perf_counter() - log_t0, grad_norm)
                pbar.set_description(f"epoch {epoch}|step {self.global_step}|loss {step_loss:.4f}")
                log_trained, log_t0 = 0, time.perf_counter()
            pbar.update(1)
            running_loss.zero_()
            step_trained = 0
            if self._run_val_every_n_steps and self.global_step % self._run_val_every_n_steps == 0:
                t_val = time.perf_counter()
                self._run_validation(epoch)
                log_t0 += time.perf_counter() - t_val  # validation time is not step time
            prof.step()
            if last_step:
                break
        pbar.close()
        return epoch_loss.item(), epoch_trained

    def _optimizer_step(self, n_tokens: int):
        """Normalise the accumulated gradients by the step's token count, clip, step; returns the grad norm."""
        scale = 1.0 / max(n_tokens, 1)
        for p in self._trainable:
            if p.grad is not None:
                p.grad.mul_(scale)
        grad_norm = None
        if self._clip_grad_norm is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self._trainable, max_norm=float(self._clip_grad_norm))
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        self._lr_scheduler.step()
        self.global_step += 1
        return grad_norm

    def _log_train_step(self, loss: float, trained: int, seconds: float, grad_norm) -> None:
        stats = self._stats
        if stats["first_train_loss"] is None:
            stats["first_train_loss"] = loss
        stats["final_train_loss"] = loss
        if stats["best_train_loss"] is None or loss < stats["best_train_loss"]:
            stats["best_train_loss"] = loss
        self._log_step({
            "loss": loss,
            "lr": self._optimizer.param_groups[0]["lr"],
            "tokens_per_second_per_gpu": trained / seconds if seconds > 0 else 0.0,
        }, grad_norm)

    def _log_step(self, log_dict: dict[str, float], grad_norm) -> None:
        """A logged optimizer step's metrics plus peak memory (when configured) and the grad norm (when clipped)."""
        if self._log_peak_memory_stats:
            self._track_gpu_peak()
            log_dict.update(training.get_memory_stats(device=self._device))
        if grad_norm is not None:
            log_dict["grad_norm"] = float(grad_norm)
        self._metric_logger.log_dict(log_dict, step=self.global_step)

    def _track_gpu_peak(self) -> None:
        """Fold CUDA's peak counters into the run's maxima (get_memory_stats resets them)."""
        if self._device.type == "cuda":
            self._stats["gpu_peak_alloc_bytes"] = max(self._stats["gpu_peak_alloc_bytes"],
                                                      torch.cuda.max_memory_allocated(self._device))
            self._stats["gpu_peak_reserved_bytes"] = max(self._stats["gpu_peak_reserved_bytes"],
                                                         torch.cuda.max_memory_reserved(self._device))

    # ------------------------------------------------------------------ outputs
    def save_checkpoint(self, epoch: int) -> None:
        t0 = time.perf_counter()
        recipe_state = {
            training.OPT_KEY: self._optimizer.state_dict(),
            training.SEED_KEY: self.seed,
            training.EPOCHS_KEY: self.epochs_run,
            training.TOTAL_EPOCHS_KEY: self.total_epochs,
            training.MAX_STEPS_KEY: self.max_steps_per_epoch,
            GLOBAL_STEP_KEY: self.global_step,
            STATS_KEY: self._summary_stats_for_state(),
        }
        out = save_lora_checkpoint(
            self._checkpointer, self._model, output_dir=self._ckpt_output_dir, epoch=epoch,
            rank=self._lora_rank, alpha=self._lora_alpha, lora_attn_modules=self._lora_attn_modules,
            apply_lora_to_mlp=self._apply_lora_to_mlp, apply_lora_to_output=self._apply_lora_to_output,
            adapter_only=self._adapter_only, recipe_state=recipe_state)
        self._stats["checkpoint_s"] += time.perf_counter() - t0
        log.info(f"Saved {out} in {time.perf_counter() - t0:.2f}s")

    def _summary_stats_for_state(self) -> dict[str, Any]:
        """The running stats as saved in the recipe state (times so far, for a resumed job to continue)."""
        self._update_memory_and_wall()
        return json.loads(json.dumps(self._stats))  # plain python types only (weights_only load)

    def _update_memory_and_wall(self) -> None:
        now = time.perf_counter()
        self._stats["wall_s"] = self._stats.get("wall_s_before_job", 0.0) + (now - self._t_start)
        self._stats["peak_rss_bytes"] = max(self._stats["peak_rss_bytes"], _peak_rss_bytes())
        self._track_gpu_peak()

    def _write_summary(self) -> None:
        self._update_memory_and_wall()
        s = self._stats
        gib = 1024 ** 3
        val = [v["val_loss"] for v in s["val"] if not math.isnan(v["val_loss"])]
        best_val = min(s["val"], key=lambda v: v["val_loss"]) if val else None
        train_s = s["train_s"]
        gpu_peak = s["gpu_peak_alloc_bytes"] / gib if self._device.type == "cuda" else None
        summary = {
            "recipe": s["recipe"],
            "complete": self.epochs_run >= self.total_epochs,
            "epochs_completed": self.epochs_run,
            "total_epochs": self.total_epochs,
            "steps": self.global_step,
            "steps_per_epoch": s["steps_per_epoch"],
            "batch_size": s["batch_size"],
            "gradient_accumulation_steps": s["gradient_accumulation_steps"],
            "max_seq_len": s["max_seq_len"],
            "train_examples": s["train_examples"],
            "val_examples": s["val_examples"],
            "samples": s["samples"],
            "tokens": s["tokens"],
            "trained_tokens": s["trained_tokens"],
            "padded_tokens": s["padded_tokens"],
            "wall_s": round(s["wall_s"], 3),
            "setup_s": round(s["setup_s"], 3),
            "train_s": round(train_s, 3),
            "val_s": round(s["val_s"], 3),
            "checkpoint_s": round(s["checkpoint_s"], 3),
            "tokens_per_s": s["tokens"] / train_s if train_s > 0 else None,
            "trained_tokens_per_s": s["trained_tokens"] / train_s if train_s > 0 else None,
            "steps_per_s": self.global_step / train_s if train_s > 0 else None,
            "peak_rss_gb": s["peak_rss_bytes"] / gib,
            "gpu_peak_memory_gb": gpu_peak,
            "gpu_peak_reserved_gb": s["gpu_peak_reserved_bytes"] / gib if self._device.type == "cuda" else None,
            "peak_memory_gb": gpu_peak if gpu_peak is not None else s["peak_rss_bytes"] / gib,
            "first_train_loss": s["first_train_loss"],
            "final_train_loss": s["final_train_loss"],
            "best_train_loss": s["best_train_loss"],
            "final_val_loss": val[-1] if val else None,
            "best_val_loss": best_val["val_loss"] if best_val else None,
            "best_val_step": best_val["step"] if best_val else None,
            "val_losses": s["val"],
            "epochs": s["epochs"],
            "device": s["device"],
            "dtype": s["dtype"],
            "model_params": s["model_params"],
            "trainable_params": s["trainable_params"],
            "lora_rank": s["lora_rank"],
            "lora_alpha": s["lora_alpha"],
            "jobs": s["jobs"],
            "resumed_from_epoch": s.get("resumed_from_epoch"),
        }
        self._output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._output_dir / f".{SUMMARY_FILE}.tmp"
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, self._output_dir / SUMMARY_FILE)

    def cleanup(self) -> None:
        self._metric_logger.close()


    @classmethod
    def main(cls, cfg: DictConfig) -> None:
        """What `recipe_main` does with the parsed config: log it, set up, train, clean up."""
        config.log_config(recipe_name=cls.__name__, cfg=cfg)
        recipe = cls(cfg=cfg)
        recipe.setup(cfg=cfg)
        recipe.train()
        recipe.cleanup()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Single-device LoRA fine-tuning with validation (cruijff_kit). Config: --config FILE [key=value ...]."""
    LoRAFinetuneRecipeSingleDeviceVal.main(cfg)


if __name__ == "__main__":
    sys.exit(recipe_main())
