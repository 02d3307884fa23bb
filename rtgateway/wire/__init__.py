"""The sans-io protocol core: codecs and the JSON-RPC 2.0 model.

Nothing in this package imports Twisted or any other part of rtgateway:
bytes go in, typed messages or exact error objects come out.
"""
