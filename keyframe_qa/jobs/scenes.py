"""The `scenes` job: every scene of a video (PySceneDetect) with one keyframe each, as JSON or CSV."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..errors import KeyframeQAError
from ..outputs.report import scenes_csv, scenes_report, to_json
from ..selection.scenes import SceneOptions, detect_scenes, keyframe_numbers, select_longest
from ..video.container import check_path
from ..video.probe import ProbedVideo, probe


def scenes_job(video: str, options: SceneOptions, *, use_cache: bool = True, as_csv: bool = False) -> str:
    """The scenes report of `video` as text (JSON, or CSV with `as_csv`)."""
    check_path(video)
    # The probe (frame index) runs beside detection rather than before it; both mostly wait on
    # FFmpeg with the GIL released. A bad file fails the probe with the more precise message.
    with ThreadPoolExecutor(max_workers=1) as pool:
        probing = pool.submit(lambda: _indexed(probe(video)))
        try:
            detected = detect_scenes(
                video,
                options,
                use_cache=use_cache,
                show_progress=True,
                frame_count=lambda: probing.result().frame_count,
            )
        except KeyframeQAError:
            probing.result()
            raise
        probed = probing.result()
    found = select_longest(detected, options.max_scenes)
    numbers = keyframe_numbers(probed, found, options.keyframe)
    report = scenes_report(probed.info, options.describe(), found, [(n, probed.frame_time(n)) for n in numbers])
    return scenes_csv(report) if as_csv else to_json(report)


def _indexed(probed: ProbedVideo) -> ProbedVideo:
    """The probed video with its complete index built (scenes need every frame's time)."""
    probed.index  # noqa: B018 - the property builds the complete index
    return probed
