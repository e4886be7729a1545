#!/usr/bin/env bash
# Make the skill pack visible to Claude Code: .claude/skills/<name> and .claude/agents/<file> are
# relative symlinks to skills/<name> and agents/<file>, the single source. Run after adding, renaming or
# removing a skill or agent; tests/test_skills.py fails while a link is missing or stale.
#   scripts/sync-claude.sh           create missing links, remove links whose source is gone
#   scripts/sync-claude.sh --check   change nothing; exit 1 and list what is out of date
#   scripts/sync-claude.sh --copy    copies instead of links (file systems or Claude Code builds
#                                    that do not follow symlinks); rerun after every skill edit
set -euo pipefail
cd "$(dirname "$0")/.."

mode="link"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  --copy) mode="copy" ;;
  *) echo "usage: $0 [--check|--copy]" >&2; exit 2 ;;
esac

stale=0
note() { printf '  %s\n' "$*"; }

# sync_one SOURCE DEST LINK_TARGET
sync_one() {
  local src="$1" dest="$2" target="$3"
  if [[ "$mode" == "check" ]]; then
    if [[ ! -L "$dest" || "$(readlink "$dest")" != "$target" ]]; then
      note "out of date: $dest (should link to $target)"; stale=1
    fi
    return
  fi
  if [[ "$mode" == "copy" ]]; then
    rm -rf "$dest"; cp -R "$src" "$dest"; note "copied $src -> $dest"; return
  fi
  if [[ -L "$dest" && "$(readlink "$dest")" == "$target" ]]; then
    return
  fi
  rm -rf "$dest"
  ln -s "$target" "$dest"
  note "linked $dest -> $target"
}

mkdir -p .claude/skills .claude/agents
echo "skills/ -> .claude/skills/"
for dir in skills/*/; do
  name="$(basename "$dir")"
  sync_one "skills/$name" ".claude/skills/$name" "../../skills/$name"
done
echo "agents/ -> .claude/agents/"
for file in agents/*.md; do
  name="$(basename "$file")"
  sync_one "agents/$name" ".claude/agents/$name" "../../agents/$name"
done

# entries whose source is gone
for entry in .claude/skills/* .claude/agents/*; do
  [[ -e "$entry" || -L "$entry" ]] || continue
  base="$(basename "$entry")"
  case "$entry" in
    .claude/skills/*) src="skills/$base" ;;
    *) src="agents/$base" ;;
  esac
  if [[ ! -e "$src" ]]; then
    if [[ "$mode" == "check" ]]; then
      note "stale: $entry (no $src)"; stale=1
    else
      rm -rf "$entry"; note "removed $entry (no $src)"
    fi
  fi
done

if [[ "$mode" == "check" && "$stale" == 1 ]]; then
  echo "run scripts/sync-claude.sh to fix" >&2
  exit 1
fi
echo "ok"
