"""workers/inspect"""
