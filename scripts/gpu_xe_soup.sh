#!/usr/bin/env bash
# A prepared run for a lent GPU machine (the device tool; JAX, no TensorFlow): the feature grids of the
# packed photos, a cross-entropy base (the shipped no-deep-output recipe, BASE_EP epochs), NF forks of it
# (FORK_EP more epochs each, other seeds, the learning rate where the base left it), their mean (a
# "soup", training.average), then NS stage-1 SCST runs of SCST_EP epochs from the soup and their mean,
# as long as BUDGET seconds allow. What lands in $OUT: xesoup.weights.npz, xefork1.weights.npz (one fork,
# the soup's control), scstsoup.weights.npz (the mean of every SCST epoch), the run's train_config.json
# and vocab.json, logs.tgz. Score them here on the originals' grids: training.evaluate --weights (a run
# folder: the two json beside).
#
# Measured in the twenty-fourth round (H200, the defaults): unpack and features 23 s, the base 107 s,
# eight forks side by side 323 s; then 27 s were left of BUDGET 510, so SCST did not start. The machine
# stays warm for 30 s after a call and keeps /tmp: a second call at once with SCST_ONLY=1 runs the SCST
# stage from the first call's soup (three runs side by side: about 50 s of start and 112-132 s an epoch).
#
# Here, once (the checkout and .gpu travel together, 64 MiB at most; move the shipped bundle's
# decoder.weights.npz, classifier.npz and two .onnx graphs out of the tree for the call, git restores
# them after):
#   echo /.gpu/ >> .git/info/exclude
#   python -m training.devicepack pack --data ../shared/data/flickr8k --out .gpu \
#       --text-captions ../shared/data/coco-captions-text/captions_val2017_text.token.txt
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels \
#       keras==3.15.1 namex==0.1.0 optree==0.20.0 platformdirs==4.14.8
# There (device run, carry [".gpu"], timeout_s 580):  BUDGET=510 bash scripts/gpu_xe_soup.sh
# then at once (carry [".gpu"], timeout_s 345):  SCST_ONLY=1 NS=3 SCST_EP=2 BUDGET=320 bash scripts/gpu_xe_soup.sh
# SCST_INIT=.gpu/init (a run folder: best.weights.npz, train_config.json, vocab.json, carried) skips the
# cross-entropy stage and starts the SCST runs from it; SCST_RESUME=1 (a second call on the warm machine,
# SCST_EP higher) continues this machine's runs instead of starting them again. Each SCST epoch that
# every run finished comes back as the runs' mean, scst_eNN.weights.npz, beside scstsoup.weights.npz.
# The photos, the encoder and the wheels fill the call's 64 MiB, so an init run folder (16 MiB) goes in a
# second call: PREP_ONLY=/tmp/f8k unpacks, copies the Flickr8k folder there (out of .gpu, which the next
# call replaces) and caches its grids; then at once WARM=1 D=/tmp/f8k SCST_INIT=.gpu/init (with .gpu
# holding the init alone) uses them, the wheels and the unpacked encoder that the first call left.
# LOCAL=1 PY=.venv/bin/python D=.gpu/flickr8k NF=2 NS=2 BASE_EP=1 FORK_EP=1 XE_EXTRA="--text-limit 300
# --batch-size 4" SCST_EXTRA="--max-steps 1 --batch-size 4" runs it here on a tiny pack in about a minute,
# as tests/training/test_gpu_script.py does (the batches must fit the pack's photos).
set -u
T0=$(date +%s); BUDGET=${BUDGET:-520}; NF=${NF:-8}; NS=${NS:-5}; BASE_EP=${BASE_EP:-2}; FORK_EP=${FORK_EP:-6}
OUT=${OUT:-/tmp/out}; R=${R:-/tmp/runs}; PY=${PY:-python3}; LOCAL=${LOCAL:-}
XE_EXTRA=${XE_EXTRA:-}; SCST_EXTRA=${SCST_EXTRA:-}; SCST_ONLY=${SCST_ONLY:-}; SCST_EP=${SCST_EP:-1}
SCST_INIT=${SCST_INIT:-}; SCST_RESUME=${SCST_RESUME:-}; PREP_ONLY=${PREP_ONLY:-}; WARM=${WARM:-}
mkdir -p "$OUT" "$R"
elapsed() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
if [ -z "$LOCAL" ]; then
  [ -n "$SCST_ONLY$SCST_RESUME$WARM" ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .gpu/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
export IMGCAP_CACHE_DIR=${IMGCAP_CACHE_DIR:-/tmp/imgcap-cache}
$PY -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())" || exit 1
D=${D:-.gpu/flickr8k}; C=/tmp/grids; TEXT=.gpu/text.token.txt
# A second call re-sends .gpu, photo archive and all: its photos are taken out again.
if [ -z "$SCST_ONLY$SCST_RESUME$WARM" ] || [ ! -d $D/images ]; then $PY -m training.devicepack unpack .gpu || exit 1; fi
if [ -n "$PREP_ONLY" ]; then
  rm -rf "$PREP_ONLY" && cp -r $D "$PREP_ONLY" || exit 1
  $PY -c "import sys; from training.train import TrainConfig; from training.train_jax import compute_features
print(compute_features(TrainConfig(data=sys.argv[1], out='', cache=sys.argv[2])), 'grids computed')" "$PREP_ONLY" $C || exit 1
  elapsed "prepared $PREP_ONLY"; exit 0
fi
COMMON="--data $D --cache $C --tags --text-captions $TEXT --feature-dim 512 --lr-decay 0.88 --label-smoothing 0.1 --no-deep-output $XE_EXTRA"
INIT=${SCST_INIT:-$R/xesoup}
if [ -n "$SCST_INIT" ]; then
  cp $SCST_INIT/train_config.json $SCST_INIT/vocab.json $OUT/
elif [ -z "$SCST_ONLY" ]; then
  elapsed base
  $PY -m training.train_jax $COMMON --out $R/base --learning-rate 5e-4 --epochs $BASE_EP --seed 2001 \
    > $R/base.log 2>&1 || { tail -30 $R/base.log; exit 1; }
  tail -2 $R/base.log
  LR=$($PY -c "print(5e-4 * 0.88 ** $BASE_EP)")
  elapsed "$NF forks, learning rate $LR"
  for i in $(seq 1 $NF); do
    $PY -m training.train_jax $COMMON --out $R/f$i --learning-rate $LR --epochs $FORK_EP --seed $((2100 + i)) \
      --init-weights $R/base/epoch$(printf %02d $BASE_EP).weights.npz > $R/f$i.log 2>&1 &
  done
  wait
  LAST=epoch$(printf %02d $FORK_EP).weights.npz
  mkdir -p $R/xesoup
  $PY -m training.average --out $R/xesoup/best.weights.npz $R/f*/$LAST || exit 1
  cp $R/f1/train_config.json $R/f1/vocab.json $R/xesoup/
  cp $R/xesoup/best.weights.npz $OUT/xesoup.weights.npz
  cp $R/f1/$LAST $OUT/xefork1.weights.npz
  cp $R/f1/train_config.json $R/f1/vocab.json $OUT/
elif [ ! -f $INIT/best.weights.npz ]; then
  echo "SCST_ONLY: no $INIT from an earlier call on this machine"; exit 1
fi
LEFT=$(( BUDGET - ($(date +%s) - T0) - 30 ))
elapsed "SCST with $LEFT s left"
if [ $LEFT -gt 100 ] && [ $NS -gt 0 ]; then
  [ -n "$SCST_RESUME" ] || rm -rf $R/s[0-9]*  # an earlier call's runs: only this call's epochs go into the mean
  for i in $(seq 1 $NS); do
    timeout $LEFT $PY -m training.scst_jax --data $D --cache $C --out $R/s$i --init $INIT \
      --scst-candidates guarded --batch-size 50 --epochs $SCST_EP --agreement-penalty 0.5 --seed $((3000 + i)) --no-java \
      $SCST_EXTRA > $R/s$i.log 2>&1 &
  done
  wait
  if ls $R/s*/epoch01.weights.npz; then
    $PY -m training.average --out $OUT/scstsoup.weights.npz $R/s*/epoch??.weights.npz || exit 1
    for e in $(seq -f %02g 1 $SCST_EP); do
      [ $(ls $R/s*/epoch$e.weights.npz 2>/dev/null | wc -l) -eq $NS ] || continue
      $PY -m training.average --out $OUT/scst_e$e.weights.npz $R/s*/epoch$e.weights.npz || exit 1
    done
  else
    tail -30 $R/s1.log; echo "no SCST run finished an epoch"; STATUS=1
  fi
fi
elapsed done
tar czf $OUT/logs.tgz -C $R $(cd $R && ls *.log */history.json 2>/dev/null)
ls -la $OUT
exit ${STATUS:-0}
