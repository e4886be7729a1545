"""The prompt check's shortcut (skip a cell whose rendered eval_config.yaml names no tokenizer, without parsing
it) gives the same specs and skipped cells as parsing every file, and parses whatever looks unusual."""
from __future__ import annotations

import json

import cruijff_kit.workers.inspect.prompts as prompts

CONFIG = """# rendered
run: "r{i}"
cell: "c{i}"
model_path: {model}
base_model_path: {base}
dataset_type: "chat_completion"
task_args:
  data_path: "/data.json"
  split: "validation"
  prompt: "{{input}}"
"""


def _cells(root, tokenizer_dir):
    rows = [(json.dumps(str(root / "out/epoch_0")), json.dumps(str(tokenizer_dir))),  # base has a tokenizer
            (json.dumps(str(root / "out/epoch_1")), "null"),  # nothing to tokenize with: skipped
            ('"/no/such"', '"/none"'),
            ("/unquoted/path", json.dumps(str(tokenizer_dir))),  # unusual form: parsed, not skipped quickly
            (json.dumps(str(tokenizer_dir)), '"/x"\nmodel_path: "/dup"')]  # duplicate key: parsed (YAML error)
    for i, (model, base) in enumerate(rows):
        cell = root / "exp" / f"r{i}" / "eval" / f"c{i}"
        cell.mkdir(parents=True)
        (cell / "eval_config.yaml").write_text(CONFIG.format(i=i, model=model, base=base))


def test_quick_skip_agrees_with_parsing_every_file(tmp_path, monkeypatch):
    tok = tmp_path / "base"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    _cells(tmp_path, tok)
    quick = prompts.cell_specs(tmp_path / "exp")
    monkeypatch.setattr(prompts, "_quick_skip", lambda path, seen: None)
    parsed = prompts.cell_specs(tmp_path / "exp")
    assert quick == parsed
    assert [s["cell"] for s in quick[0]] == ["c0", "c3"]
    assert quick[1] == ["c1", "c2", "c4"]
