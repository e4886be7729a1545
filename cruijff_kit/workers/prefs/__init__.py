"""workers/prefs"""
