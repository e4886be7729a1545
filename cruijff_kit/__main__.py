from cruijff_kit.cli import main

raise SystemExit(main())
