{
  "targets": [
    {
      "target_name": "twinport_native",
      "sources": ["addon.c", "pair.c", "sock.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O2"],
      "conditions": [
        ["sanitize==1", {
          "cflags": ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"],
          "ldflags": ["-fsanitize=address,undefined"]
        }]
      ]
    }
  ],
  "variables": { "sanitize%": 0 }
}
