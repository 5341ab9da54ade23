from mia_bench.cli import main

raise SystemExit(main())
