from afbr.cli import main

raise SystemExit(main())
