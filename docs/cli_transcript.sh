#!/usr/bin/env bash
# Prints the `mycache` transcript of README's "The mycache command", from a real run in a
# scratch /tmp/project: paste its output there when the CLI or the key format changes.
# Usage: docs/cli_transcript.sh [PYTHON]   (a Python with my_cache installed; default python3)
set -euo pipefail
python=${1:-python3}
mycache() { "$python" -m my_cache "$@"; }
rm -rf /tmp/project && mkdir -p /tmp/project && cd /tmp/project
cat > squares.py <<'PY'
from my_cache import CacheStor, TypeStorage

stor = CacheStor(db_file="cache/catalogue.db", type_storage=TypeStorage.IN_DISK)


@stor.cache(folder="cache/squares")
def square(n: int) -> int:
    return n * n


print([square(n) for n in (2, 3)])
PY
echo "import squares" > run.py
show() { echo "\$ $*"; }
show "python run.py                       # imports squares.py, whose square(n) returns n * n"
"$python" run.py
show "sed -i 's/return n \\* n/return n ** 2/' squares.py && python run.py"
sed -i 's/return n \* n/return n ** 2/' squares.py && "$python" run.py
export MYCACHE_DB_FILE=cache/catalogue.db
show "mycache ls"; mycache ls | cat
show "mycache stats"; mycache stats
show "mycache clear --stale --yes"; mycache clear --stale --yes
