{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:cfff1f7d03079a3ace5f017a644cff02",
 "public_key": "c3216dc2b758c6779a4125c8fb2e1a65a4fcb995f2ac5fc62ab8ddba621808ae",
 "signature": "ecb84c67927274ecbdcb70c8f099679871fd204bbe7b223e65ed33b76cfc99c6d9b241d2630c9218f9a3f217ea1daee9c505137b3fdb90b255532b5b9219d90a",
 "signed_file": "manifest.json"
}
