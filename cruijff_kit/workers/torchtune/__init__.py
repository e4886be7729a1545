"""workers/torchtune"""
