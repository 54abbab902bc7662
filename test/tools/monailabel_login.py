"""Logs in to an authenticated LDFSAM server as 3D Slicer's MONAI Label module does (one client per
call: auth_enabled, auth_token with the username and password, then the token on every request)
and prints what it got. usage: python monailabel_login.py --server URL --password TOKEN"""
import argparse
import json

from monailabel.client import MONAILabelClient

p = argparse.ArgumentParser()
p.add_argument("--server", required=True)
p.add_argument("--password", required=True)
args = p.parse_args()
client = MONAILabelClient(args.server, client_id="slicer-user")
enabled = client.auth_enabled()
token = client.auth_token("slicer-user", args.password)
client = MONAILabelClient(args.server, client_id="slicer-user")
client.update_auth(token)
valid = client.auth_valid_token()
client = MONAILabelClient(args.server, client_id="slicer-user")
client.update_auth(token)
info = client.info()
print(json.dumps({"enabled": enabled, "tokenType": token["token_type"], "valid": valid, "models": list(info["models"])}))
