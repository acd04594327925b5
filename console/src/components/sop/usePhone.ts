// Whether the screen is phone-sized (≤ 768 px, as App.vue and style.css decide), kept up to date.
import { onBeforeUnmount, ref, type Ref } from 'vue'

export function usePhone(): Ref<boolean> {
  const query = window.matchMedia('(max-width: 768px)')
  const phone = ref(query.matches)
  const change = (e: MediaQueryListEvent) => { phone.value = e.matches }
  query.addEventListener('change', change)
  onBeforeUnmount(() => query.removeEventListener('change', change))
  return phone
}
