// The starter YAML for a new SOP (same shape as the library's SOP files), and the id rules the server applies.

export const SOP_ID_PATTERN = /^[a-z][a-z0-9_]*$/

export const STARTER_YAML = `id: my_new_sop
name: 高意向客户顾问跟进
family: interest_followup
goal: 被标记为高意向的客户，次日由顾问联系，两天后再发一条关怀消息
kpis:
  - {name: 顾问接通率, target: 60}
triggers:
  - on: tag_added
    tag: 高意向
reenrol_after_days: 14
exit:
  when:
    - event: purchased
    - event: unsubscribed
    - event: churned
defaults: {touchpoint: private, mode: member_task}
steps:
  - id: mark
    kind: tag
    add: [顾问跟进]
  - id: next_morning
    kind: wait
    at: "10:00"
  - id: call_task
    kind: handoff
    assignee_role: 护肤顾问
    title: 电话回访高意向客户
    instructions: 请今天内联系客户，了解肤况和需求并推荐合适的方案；沟通后在侧边栏记录结果。
    due_in: 8h
  - id: wait_2d
    kind: wait
    for: 2d
  - id: followup
    kind: message
    text: "{name}，前两天顾问和你沟通的方案还有什么疑问吗？随时找我哦～"
  - id: done
    kind: end
`

/** The SOP id a YAML text declares (its top-level \`id:\`), or ''. */
export function yamlId(text: string): string {
  const m = /^id:\s*["']?([A-Za-z0-9_]+)["']?\s*$/m.exec(text)
  return m ? m[1] : ''
}

/** The text with its top-level \`id:\` line set to \`id\`. */
export function withYamlId(text: string, id: string): string {
  return /^id:.*$/m.test(text) ? text.replace(/^id:.*$/m, `id: ${id}`) : `id: ${id}\n${text}`
}

/** The SOP name a YAML text declares, or ''. */
export function yamlName(text: string): string {
  const m = /^name:\s*["']?(.+?)["']?\s*$/m.exec(text)
  return m ? m[1] : ''
}
