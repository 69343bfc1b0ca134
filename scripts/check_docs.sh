#!/usr/bin/env bash
# Build the documentation with warnings as errors, then execute every notebook top to bottom.
# Needs the docs extra: pip install -e ".[docs]". Run from anywhere; nothing is written to the
# repository (the site goes to a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."

site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT

# Material for MkDocs prints an announcement banner on every build; it is not a warning.
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir "$site"

# Each notebook runs offline on the tiny random model; a failing cell fails the run.
pytest --nbmake notebooks/ -p no:cacheprovider -q
