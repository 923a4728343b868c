"""Golden aspect-ratio tables: ours (built from rules plus the reference's hand edits) equal the reference's."""
from opensora_nb.buckets import ASPECT_RATIOS


def check_tables_equal(case):
    ref = case.meta
    assert set(ref) == set(ASPECT_RATIOS), f"resolutions differ: only ours {set(ASPECT_RATIOS) - set(ref)}, only reference {set(ref) - set(ASPECT_RATIOS)}"
    for name, v in ref.items():
        pixels, table = ASPECT_RATIOS[name]
        assert pixels == v["pixels"], f"{name}: pixels {pixels} != {v['pixels']}"
        ours = {k: list(hw) for k, hw in table.items()}
        assert ours == v["ratios"], f"{name}: differs at {[(k, ours.get(k), r) for k, r in v['ratios'].items() if ours.get(k) != r]} / extra {set(ours) - set(v['ratios'])}"


def check_table_order(case):
    "Key order matters for exact ties in get_closest_ratio; it follows the reference's (unless the file was written sorted)."
    if list(case.meta) == sorted(case.meta):
        return  # dumped with sort_keys: the file carries no order to compare
    for name, v in case.meta.items():
        assert list(ASPECT_RATIOS[name][1]) == list(v["ratios"]), f"{name}: key order differs"
