import { useRef, type TextareaHTMLAttributes } from "react";

type CodeEditorProps = Omit<TextareaHTMLAttributes<HTMLTextAreaElement>, "onChange" | "value"> & {
  value: string;
  onChange: (value: string) => void;
};

/** A monospace textarea with line numbers in a gutter that scrolls with it. */
export function CodeEditor({ value, onChange, rows = 12, ...rest }: CodeEditorProps) {
  const gutterRef = useRef<HTMLDivElement>(null);
  const lineCount = value.split("\n").length;
  const numbers = Array.from({ length: lineCount }, (_, i) => i + 1).join("\n");
  return (
    <div className="code-editor">
      <div className="code-gutter" ref={gutterRef} aria-hidden="true">
        <pre>{numbers}</pre>
      </div>
      <textarea
        {...rest}
        rows={rows}
        value={value}
        wrap="off"
        spellCheck={false}
        autoCapitalize="off"
        autoCorrect="off"
        onChange={(event) => onChange(event.target.value)}
        onScroll={(event) => {
          if (gutterRef.current) gutterRef.current.scrollTop = event.currentTarget.scrollTop;
        }}
      />
    </div>
  );
}
