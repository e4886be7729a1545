"""cruijff_kit's torchtune recipes.

Run one with ``python -m cruijff_kit.tools.torchtune.custom_recipes.<name> --config finetune.yaml
[key=value ...]`` or ``tune run cruijff_kit/tools/torchtune/custom_recipes/<name>.py --config ...`` (that
relative path, from any directory: torchtune 0.6.1 turns it into the module name; an absolute path fails).
(This package is deliberately not called ``recipes``: that name belongs to torchtune's own package.)
"""
