from parkwatch.cli import main

raise SystemExit(main())
