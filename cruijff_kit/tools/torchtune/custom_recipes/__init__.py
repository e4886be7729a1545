"""cruijff_kit's torchtune recipes.

Run one with ``tune run $(python -c 'import cruijff_kit.tools.torchtune.custom_recipes.<name> as m;
print(m.__file__)') --config finetune.yaml`` or ``python -m cruijff_kit.tools.torchtune.custom_recipes.<name>
--config finetune.yaml [key=value ...]``. (This package is deliberately not called ``recipes``: that name
belongs to torchtune's own recipes package.)
"""
