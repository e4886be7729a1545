"""torchtune-side code: dataset builders, checkpoint helpers and custom recipes.

Everything here runs inside the training job. It may import torch / torchtune, and must never import
the cruijff_kit CLI modules. Keep this file free of imports: ``tune run`` and
``python -m cruijff_kit.tools.torchtune.custom_recipes...`` import it first.
"""
