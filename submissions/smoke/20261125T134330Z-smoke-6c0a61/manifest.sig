{
 "algorithm": "ed25519",
 "key_fingerprint": "SHA256:cfff1f7d03079a3ace5f017a644cff02",
 "public_key": "c3216dc2b758c6779a4125c8fb2e1a65a4fcb995f2ac5fc62ab8ddba621808ae",
 "signature": "e716fc19423077439d37fabd2c5775ba5fb1717812bc9336589fd255258f2d485c692878929f157a8376f379b0a148c683c2e59bf93665739ec24e6fc2438304",
 "signed_file": "manifest.json"
}
