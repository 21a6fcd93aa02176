{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:8695dbd30cb66fefb3ec43981b79dac5",
 "public_key": "0cf8869fa9c1f8f2ed975e4278ec5db271e3fbecd6af15964b9ebd5ddf9db545",
 "signature": "371bbc171d9ee2ec7deca899c9ede785145ca8dc2cb0ec65a37af5039f181ed4c984b8411393008b94583981fd29ff9c194a2262b6704c88a20f0d2c79c3910d",
 "signed_file": "manifest.json"
}
