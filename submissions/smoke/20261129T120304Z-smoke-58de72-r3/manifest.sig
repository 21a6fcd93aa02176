{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:8695dbd30cb66fefb3ec43981b79dac5",
 "public_key": "0cf8869fa9c1f8f2ed975e4278ec5db271e3fbecd6af15964b9ebd5ddf9db545",
 "signature": "e6e26c4ecafadb4e1d88e60b0ea259ec5525b8d131eaba132d4157977e120366c0bf18502ea5ca35aa49141d11dd62b024f5fd666c6538f81dae1d0dd9059f0e",
 "signed_file": "manifest.json"
}
