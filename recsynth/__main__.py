from recsynth.cli import main

raise SystemExit(main())
