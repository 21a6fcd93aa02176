{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:cfff1f7d03079a3ace5f017a644cff02",
 "public_key": "c3216dc2b758c6779a4125c8fb2e1a65a4fcb995f2ac5fc62ab8ddba621808ae",
 "signature": "82ef2955d15792ac15e06ab68878ba320f7c8ff81a6294c43a2a6dddfde0460b6e81dfa07b19559b75a28b100f1c66af6f187ceacb638cfcf757772a2440260e",
 "signed_file": "manifest.json"
}
