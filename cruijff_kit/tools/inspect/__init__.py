"""inspect-ai side of cruijff_kit: runs INSIDE eval jobs (never imports the CLI side).

    dataset.py   our JSON format ({"train": [...], "validation": [...]}) -> inspect Samples, with the
                 same prompt template and system prompt as training
    scorers.py   scorer specs ({name, params}) -> inspect scorers, plus our `numeric` scorer
    run_cell.py  `python -m cruijff_kit.tools.inspect.run_cell eval_config.yaml`: one eval cell
    run_group.py `python -m cruijff_kit.tools.inspect.run_group eval_group.yaml`: the cells of one grouped
                 eval job, one model load (provider.py swaps each epoch's adapter in memory)
"""
