{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:8695dbd30cb66fefb3ec43981b79dac5",
 "public_key": "0cf8869fa9c1f8f2ed975e4278ec5db271e3fbecd6af15964b9ebd5ddf9db545",
 "signature": "5da4e9344d3c2d694b2f5868f7bb276034968cbd2ae0e730bf86fed0eb7088fd4ba147c833b9f352437b2432cde86f38a47f958438b020955bf6402f09008608",
 "signed_file": "manifest.json"
}
