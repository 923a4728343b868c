"""Make tests/golden/prompt_cleaning.json: raw prompts and what the reference Open-Sora v1.2.0 makes of them.

Runs the reference's own code (`text_preprocessing` of opensora/models/text_encoder/t5.py, and `split_prompt` /
`append_score_to_prompts` / `merge_prompt` of opensora/utils/inference_utils.py in the order scripts/inference.py calls
them), read from a git mirror at the tag (see tools/reference_v1_2.py). Usage:

    python tools/golden_prompt_cleaning.py [--repo MIRROR] [--out tests/golden/prompt_cleaning.json]
"""
import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import reference_v1_2 as R  # noqa: E402

PROMPTS = [
    # case, spacing, plain sentences
    "A Red Circle Moving LEFT on a dark background", "  a beautiful waterfall   ", "", "   ", "Drone view of waves. Sunset!",
    "a cat\tsitting\non a mat", "The Eiffel Tower at night, Paris, France",
    # URLs and domains
    "Watch https://example.com/videos/123?x=1 now", "visit www.site.org for more", "see example.co.uk/page today",
    "a river http://a.b.ru and more text", "mail me at someone@example.com please",
    # HTML and entities
    "<b>bold</b> text and <i>italic</i> <br/> line", "Tom &amp; Jerry &quot;chase&quot; scene", "a &lt;tag&gt; here",
    "<person> walking a dog", "<p>A <a href='x.html'>link</a></p>",
    # emoji and symbols
    "a happy dog 🐶 running 🏃‍♂️ in the park ✨", "price ™ ® © • § ~ ½ ¾ ¿ ¡ ·", "stars *** and ### and |||",
    "brackets (round) [square] {curly}", "a/b\\c slashes", "wow!!! what??? ...and then....",
    # CJK and other scripts
    "一只猫在草地上", "a cat 猫 on grass 草地", "東京タワー at night", "ソウル 서울 city", "Привет мир — hello",
    "㈱ company ㍻ era", "䷀ hexagram",
    # punctuation, quotes and dashes
    "“quoted” ‘single’ «guillemets» `back` ´acute´", "\"\"double quoted\"\"", "'single wrapped'", "a — long — dash – en – dash",
    "hyphen-ated-words-joined-here", "snake_case_words_joined_here_too", "x - y", "two-words", "a . b . c",
    ",leading comma", "trailing colon:", "trailing plus+", ".hidden", "ratio : 16:9", "a,b,c and 1,2,3", "end.Start",
    # numbers, ids, sizes, addresses
    "room 101 and 2024 year", "id 1234567 and #12 and #123456 and #1234", "ip 192.168.0.1 here", "chapter 1:23   ",
    "size 1920x1080 and 3.5×2", "code jc6640 and jc6640vc and 6640vc231 and j2d1a2a", "page 12 of the book",
    "3.14 pi and 2.5 seconds", "model abc123 xyz", "aesthetic score: 6.5.", "motion score: 4.0. camera motion: pan left.",
    # @mentions and hashtags
    "@user42 shows #nature #sunset", "hello @john_doe!", "#hashtag at start",
    # file names and shop noise
    "image.png and video.mp4 and doc.pdf", "free shipping worldwide", "free download free", "click for details now",
    "jpg images of cats", "worldwide free shipping on all",
    # escapes and URL-encoding
    "line one\\nline two", "a%20cat%20sleeping", "plus+signs+here", "100% natural",
    # longer realistic prompts
    "A close-up shot of a woman's face, lit by the warm glow of a candle; she smiles softly.",
    "The camera pans across a bustling market in Marrakech (Morocco) at dusk — vendors, spices & lanterns.",
    "a snowy mountain landscape, 4K, HDR, cinematic lighting, trending on artstation",
]
# per-loop prompts: the reference splits them, appends the scores to each segment, cleans each, and merges them again
LOOP_PROMPTS = ["|0|A Red Circle|1|a BLUE square!", "|0| a cat <b>sleeping</b> |2| the cat wakes up (slowly) ",
                "|0|Sunrise over https://x.com/sea|1|noon|3|Sunset 🌅"]
SCORES = [dict(aes=None, flow=None, camera_motion=None), dict(aes=6.5, flow=None, camera_motion=None),
          dict(aes=6.5, flow=4.0, camera_motion="pan left")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=None, help="git mirror of hpcaitech/Open-Sora (default $OPENSORA_REF_REPO or the session's)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "golden" / "prompt_cleaning.json"))
    a = ap.parse_args(argv)
    R.load(["opensora/models/text_encoder/t5.py", "opensora/utils/inference_utils.py"], a.repo)
    from opensora.models.text_encoder.t5 import clean_caption, text_preprocessing
    from opensora.utils.inference_utils import append_score_to_prompts, merge_prompt, split_prompt

    def reference_order(prompt, scores):  # scripts/inference.py steps 0, 2, 3, 4
        segments, loop_idx = split_prompt(prompt)
        segments = append_score_to_prompts(segments, **scores)
        return merge_prompt([text_preprocessing(s) for s in segments], loop_idx)

    out = dict(
        what="Open-Sora's prompt cleaning: `text_preprocessing` (clean_caption twice) of each raw prompt; `one_pass` is one "
             "clean_caption; `pipeline` is scripts/inference.py's order (split per loop, score suffixes, clean, merge)",
        reference=dict(repo="hpcaitech/Open-Sora", tag=R.TAG, commit=R.commit(a.repo),
                       functions=["opensora/models/text_encoder/t5.py:text_preprocessing", "opensora/models/text_encoder/t5.py:clean_caption",
                                  "opensora/utils/inference_utils.py:split_prompt,append_score_to_prompts,merge_prompt"]),
        script="tools/golden_prompt_cleaning.py", libraries={k: version(k) for k in ("ftfy", "beautifulsoup4")},
        cases=[dict(raw=p, cleaned=text_preprocessing(p), one_pass=clean_caption(p)) for p in PROMPTS],
        pipeline=[dict(raw=p, scores=s, full_prompt=reference_order(p, s)) for p in PROMPTS[:8] + LOOP_PROMPTS for s in SCORES],
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{a.out}: {len(out['cases'])} cases, {len(out['pipeline'])} pipeline cases")


if __name__ == "__main__":
    main()
