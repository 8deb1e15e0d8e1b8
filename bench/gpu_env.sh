# Sourced by the GPU scripts: the machine's torch and triton as they are (nothing can be
# downloaded there), and the package put on the path through a shim that maps tritonalex.kernels
# to kernels/, as the install does. Every command then runs from the shim's folder: `python -m`
# puts the working folder first on the path, and the repository's own tritonalex/ (which has no
# kernels/) must not shadow the shim's. Defines `repo` and `timed`.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONUNBUFFERED=1
shim=$(mktemp -d)
mkdir "$shim/tritonalex"
ln -s "$repo"/tritonalex/* "$shim/tritonalex/"
ln -s "$repo/kernels" "$shim/tritonalex/kernels"
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
cd "$shim" || exit 1

# timed SECONDS TITLE COMMAND...: one step under its own time limit, with its time printed; the
# limit is cut to what is left of BUDGET seconds (since the script started), and a step with
# under 10 s left is skipped.
timed() {
  local limit=$1 title=$2 start=$SECONDS
  shift 2
  local left=$(( ${BUDGET:-100000} - SECONDS ))
  if [ "$left" -lt 10 ]; then
    echo "== $title: skipped, the budget is spent"
    return 124
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $title (limit ${limit}s)"
  timeout "$limit" "$@"
  echo "-- exit code $?, $((SECONDS - start)) s"
}
