from .official import convert_official, load_official, official_to_ours, ours_to_official

__all__ = ["load_official", "convert_official", "official_to_ours", "ours_to_official"]
