"""inspect-ai side of cruijff_kit: runs INSIDE eval jobs (never imports the CLI side).

    dataset.py   our JSON format ({"train": [...], "validation": [...]}) -> inspect Samples, with the
                 same prompt template and system prompt as training
    scorers.py   scorer specs ({name, params}) -> inspect scorers, plus our `numeric` scorer
    run_cell.py  `python -m cruijff_kit.tools.inspect.run_cell eval_config.yaml`: one eval cell
"""
