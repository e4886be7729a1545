"""run/executors"""
