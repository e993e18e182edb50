"""`EvaluateChatCallback`: answers a few fixed prompts about a fixed image during training (XTuner's
EvaluateChatHook), so a broken template or a diverging run shows in the log long before the end."""

import os

import torch
from transformers import TrainerCallback


class EvaluateChatCallback(TrainerCallback):
    def __init__(self, processor, prompts: list[str], image=None, every_n_steps: int = 500, max_new_tokens: int = 50):
        self.processor = processor
        self.prompts = prompts
        self.image = image  # a PIL image or None
        self.every_n_steps = every_n_steps
        self.max_new_tokens = max_new_tokens
        self.tb_writer = None  # our own writer into args.logging_dir, next to TensorBoardCallback's event file

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._evaluate(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._evaluate(args, state, model)
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None

    @torch.no_grad()
    def _evaluate(self, args, state, model):
        if not self.prompts or model is None:
            return
        answers = [self.answer(model, prompt) for prompt in self.prompts]
        if not state.is_world_process_zero:
            return
        text = "\n".join(f"[{prompt}] -> {answer}" for prompt, answer in zip(self.prompts, answers))
        print(f"\n=== chat evaluation at step {state.global_step} ===\n{text}\n", flush=True)
        folder = os.path.join(args.output_dir, "eval_chat")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"step_{state.global_step}.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        writer = self._tensorboard_writer(args)
        if writer is not None:
            writer.add_text("eval_chat", text.replace("\n", "  \n"), state.global_step)
            writer.flush()

    def _tensorboard_writer(self, args):
        """A writer into `args.logging_dir` when the run reports to TensorBoard (TensorBoard reads every event file
        in a run folder, so the answers show next to the losses)."""
        report_to = getattr(args, "report_to", None) or []
        if self.tb_writer is None and "tensorboard" in report_to and getattr(args, "logging_dir", None):
            from torch.utils.tensorboard import SummaryWriter

            self.tb_writer = SummaryWriter(log_dir=args.logging_dir)
        return self.tb_writer

    def answer(self, model, prompt: str) -> str:
        """Greedy answer in the model's chat template (cache on, checkpointing off while generating)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        was_training, use_cache = model.training, base.config.use_cache
        model.eval()
        base.config.use_cache = True
        try:
            content = ([{"type": "image"}] if self.image is not None else []) + [{"type": "text", "text": prompt}]
            text = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            images = [self.image] if self.image is not None else None
            inputs = self.processor(images=images, text=[text], return_tensors="pt").to(base.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(base.dtype)
            output = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            return self.processor.tokenizer.decode(
                output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
            ).strip()
        finally:
            base.config.use_cache = use_cache
            model.train(was_training)
