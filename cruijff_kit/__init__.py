"""cruijff_kit: plan, scaffold, run, evaluate and summarize LLM fine-tuning experiments.

The CLI side of the package never imports torch, torchtune or inspect_ai at import time;
code that needs them imports inside the function that runs the heavy work.
"""

__version__ = "0.1.0"
