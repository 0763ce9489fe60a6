#!/bin/sh
# Seeds for fuzz_json in directory $1: JSON documents of the shapes the
# converter reads, and safetensors headers (the target also reads each input
# as one, data after it filled with 0x3c bytes).
out=$1
printf '{"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]},"__metadata__":{"format":"pt"}}' > "$out/seed-header"
printf '{"text_config":{"hidden_size":256,"layer_types":["sliding_attention","full_attention"],"rms_norm_eps":1e-06,"rope_parameters":{"full_attention":{"rope_type":"proportional","partial_rotary_factor":0.25}},"x":null,"y":true}}' > "$out/seed-config"
printf '{"model":{"type":"BPE","vocab":{"\\u2581the":5,"<0x0A>":6,"\\ud83d\\ude00":7},"merges":["a b",["c","d"]]},"added_tokens":[{"id":0,"content":"<pad>","special":true}]}' > "$out/seed-tokenizer"
printf '[-0.5e-3, 12345678901234567890, "\\"\\\\\\/\\b\\f\\n\\r\\t", [[[]]], {}]' > "$out/seed-values"
