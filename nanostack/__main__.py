from nanostack.cli import main

raise SystemExit(main())
