"""Where weights come from: packaged offline model sources, the CTranslate2 Whisper reader /
converter and the speech models shipped inside this package.

May import: `speechllm.errors` only.
"""
