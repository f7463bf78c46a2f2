"""``fusionframes`` command line: a thin layer over the library; user errors become a message and exit code 2."""

import argparse
import json
import sys
from pathlib import Path

from .errors import FusionFramesError


def _params(args):
    from .models.presets import PRESETS, preset_parameters

    if args.preset == "list":
        print("\n".join(PRESETS))
        return
    n = preset_parameters(args.preset)
    print(json.dumps({"preset": args.preset, "parameters": n}) if args.json else f"{args.preset}: {n:,} parameters")


def _load_config(text):
    if text is None:
        return None
    source = Path(text).read_text() if Path(text).is_file() else text
    try:
        config = json.loads(source)
    except json.JSONDecodeError as error:
        raise FusionFramesError(f"--config is neither a JSON object nor a JSON file: {error}") from None
    if not isinstance(config, dict):
        raise FusionFramesError("--config must be a JSON object of the official constructor kwargs")
    return config


def _convert(args):
    from .convert.official import convert_official

    out = convert_official(args.component, args.checkpoint, args.out_dir, _load_config(args.config))
    print(f"wrote {out}")


def _demo(args):
    from .demo import tiny_random_video

    path = tiny_random_video(args.prompt, args.output, seed=args.seed)
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionframes", description="FusionFrames text-to-video (Kandinsky Video 1.0)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="count a preset's parameters (built on the meta device, no memory)")
    p.add_argument("preset", help="preset name, or 'list' to list them")
    p.add_argument("--json", action="store_true", help='print {"preset": ..., "parameters": N}')
    p.set_defaults(run=_params)

    p = sub.add_parser("convert-official", help="official KV 1.0 .pt checkpoint → from_pretrained folder")
    p.add_argument("--component", required=True, help="keyframe-unet, interpolation-unet, movq or video-movq")
    p.add_argument("--config", help="official constructor kwargs as JSON (string or file); default full KV 1.0 size")
    p.add_argument("checkpoint", help="path of the official .pt file")
    p.add_argument("out_dir", help="new folder to write")
    p.set_defaults(run=_convert)

    p = sub.add_parser("demo", help="the whole chain with a tiny *random* model (until the default model ships)")
    p.add_argument("--prompt", default="a red ball moving to the right")
    p.add_argument("--output", default="outputs/demo.mp4")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except FusionFramesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
