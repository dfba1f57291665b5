"""Languages a caption can be asked for: ISO 639-1 code -> the English name the prompt uses.

The 20 most spoken languages plus the main languages of European and Asian stock markets. Qwen2.5-VL
writes all of them; quality varies, so English stays the default.
"""

from types import MappingProxyType

LANGUAGES = MappingProxyType(
    {
        "en": "English",
        "zh": "Simplified Chinese",
        "hi": "Hindi",
        "es": "Spanish",
        "fr": "French",
        "ar": "Arabic",
        "bn": "Bengali",
        "pt": "Portuguese",
        "ru": "Russian",
        "ur": "Urdu",
        "id": "Indonesian",
        "de": "German",
        "ja": "Japanese",
        "sw": "Swahili",
        "mr": "Marathi",
        "te": "Telugu",
        "tr": "Turkish",
        "ta": "Tamil",
        "vi": "Vietnamese",
        "ko": "Korean",
        "it": "Italian",
        "th": "Thai",
        "pl": "Polish",
        "nl": "Dutch",
        "uk": "Ukrainian",
        "fa": "Persian",
        "sv": "Swedish",
    }
)
