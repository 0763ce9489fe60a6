#!/bin/sh
# Seeds for fuzz_tokenizer in directory $1. The first byte of each input
# picks the mode (odd: parse special tokens).
out=$1
printf '\001<|turn>user\nHello<turn|>\n<|turn>model\n' > "$out/seed-chat"
printf '\000<bos>text<eos> <|tool_call>call:f{x:<|"|>a<|"|>}<tool_call|>' > "$out/seed-specials"
printf '\000   leading\n\n\n\ttabs  trailing   \r\n' > "$out/seed-space"
printf '\000na\303\257ve \344\270\255\346\226\207 \360\237\230\200\360\237\221\215\360\237\217\275 Stra\303\237e' > "$out/seed-utf8"
printf '\001a\377\376b \342\202 \360\237\230 \355\240\200 x' > "$out/seed-invalid"
printf '\000def f(x):\n    return x*2\n' > "$out/seed-code"
