from cruijff_kit.cli import verb_entry

verb_entry("scaffold")
